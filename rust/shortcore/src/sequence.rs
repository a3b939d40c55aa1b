//! Sequence rules: patterns over several requests that the edge, seeing one request at a time,
//! cannot judge.
//!
//! * `bot:sibling-burst` — every link of one message hit by "people" within a couple of seconds
//!   (a security scanner opening all the links it finds);
//! * `bot:sweep` — one client (address and user agent) on many recipients' links within a few
//!   seconds.
//!
//! Applied to human clicks on known tokens; the clock is the events' own time, so a replay judges
//! the same way. A rule that fires on events of earlier batches (already inserted) hands them
//! back to be written again with a higher revision, which replaces them.

use std::collections::HashMap;
use std::hash::BuildHasher;

use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::eventrows::Row;
use crate::variants::VariantAssigner;

/// The reason given to the events of a sibling burst.
pub const SIBLING_BURST: &str = "bot:sibling-burst";
/// The reason given to the events of a sweep.
pub const SWEEP: &str = "bot:sweep";

/// How often (in the events' time) the rules forget what no window can use. Every 10 s, they
/// held up to three times the 5 s they need: draining 2M events written at 100,000 a second, the
/// sink grew by 2.1 GB, and by 1.2 GB pruning every second, no slower. A pass over the tables
/// costs little beside the rows it frees.
const PRUNE_EVERY_MS: i64 = 1_000;

const MARK_SIBLING: u8 = 1;
const MARK_SWEEP: u8 = 2;

/// What the sink knows of a campaign's messages: how many links they have (for the sibling rule)
/// and, with A/B variants, which variant each recipient got (each event carries its name).
#[derive(Debug, Clone)]
pub enum CampaignLinks {
    /// Every message has this many (0: no sibling rule for the campaign).
    Count(i64),
    /// A/B variants: recipient `r`'s message is variant `v = assigner.variant_of(r)`, named
    /// `names[v]`, with `links[v]` links.
    Variants {
        /// The campaign's recipient → variant split.
        assigner: Arc<VariantAssigner>,
        /// Each variant's number of links.
        links: Vec<i64>,
        /// Each variant's name; shared, so a row holds its variant's name without a copy.
        names: Vec<Arc<str>>,
    },
}

impl CampaignLinks {
    /// The number of links of recipient `recipient`'s message.
    pub fn of(&self, recipient: i64) -> i64 {
        match self {
            Self::Count(n) => *n,
            Self::Variants { assigner, links, .. } => u64::try_from(recipient)
                .ok()
                .and_then(|r| links.get(assigner.variant_of(r)).copied())
                .unwrap_or(0),
        }
    }

    /// The index and name of recipient `recipient`'s variant: `None` for a campaign of one text
    /// or a negative index (no recipient).
    pub fn variant(&self, recipient: i64) -> Option<(usize, &Arc<str>)> {
        match self {
            Self::Count(_) => None,
            Self::Variants { assigner, names, .. } => {
                let index = assigner.variant_of(u64::try_from(recipient).ok()?);
                names.get(index).map(|name| (index, name))
            }
        }
    }

    /// The number of links of the messages of variant `variant` (an index); for a campaign of
    /// one text, of every message.
    pub fn of_variant(&self, variant: usize) -> i64 {
        match self {
            Self::Count(n) => *n,
            Self::Variants { links, .. } => links.get(variant).copied().unwrap_or(0),
        }
    }

    /// True for a campaign with A/B variants.
    pub fn has_variants(&self) -> bool {
        matches!(self, Self::Variants { .. })
    }
}

impl From<i64> for CampaignLinks {
    fn from(count: i64) -> Self {
        Self::Count(count)
    }
}

/// What the rules remember between batches: the recent human clicks per message and per client.
#[derive(Debug)]
pub struct SequenceRules {
    sibling_ms: i64,
    sweep_ms: i64,
    sweep_recipients: usize,
    messages: FxHashMap<Key, Hits>,
    clients: FxHashMap<Key, Hits>,
    keys: foldhash::quality::RandomState,
    newest: i64,
    pruned: i64,
}

/// A table key: a keyed 64-bit hash of a message (campaign, recipient) or of a client (address,
/// user agent), made once per event. Probing by strings cost every lookup a hash of them and a
/// visit to the rows they live in; two different messages or clients share a key with a chance
/// of about 2^-64 per pair, and the per-process seed keeps anyone from arranging it.
type Key = u64;

/// One message's or client's recent hits; almost always one or two, so kept inline.
type Hits = SmallVec<[Arc<Row>; 2]>;

/// The events of one batch, known by address, and those of earlier batches to emit again.
struct Marking<'r> {
    rows: &'r [Arc<Row>],
    batch: Option<FxHashSet<usize>>,
    again: Vec<Arc<Row>>,
    again_seen: FxHashSet<usize>,
}

impl Marking<'_> {
    fn mark(&mut self, hits: &[Arc<Row>], mark: u8) {
        for hit in hits {
            if hit.mark.swap(mark, Ordering::Relaxed) == mark {
                continue;
            }
            let key = Arc::as_ptr(hit) as usize;
            // The batch's own rows are known only once something is marked: most batches mark
            // nothing, and a set of every row would cost them all a hash insert per row.
            let batch = self
                .batch
                .get_or_insert_with(|| self.rows.iter().map(|row| Arc::as_ptr(row) as usize).collect());
            if !batch.contains(&key) && self.again_seen.insert(key) {
                self.again.push(Arc::clone(hit));
            }
        }
    }
}

impl SequenceRules {
    /// Rules with these windows (milliseconds); `sweep_recipients` 0 turns the sweep rule off.
    pub fn new(sibling_ms: i64, sweep_ms: i64, sweep_recipients: usize) -> Self {
        Self {
            sibling_ms,
            sweep_ms,
            sweep_recipients,
            messages: FxHashMap::default(),
            clients: FxHashMap::default(),
            keys: foldhash::quality::RandomState::default(),
            newest: 0,
            pruned: 0,
        }
    }

    /// Marks the rows the rules catch; returns earlier rows that must be emitted again.
    /// `links` gives each campaign's number of links (a campaign missing: no sibling rule).
    pub fn apply(&mut self, rows: &[Arc<Row>], links: &HashMap<String, CampaignLinks>) -> Vec<Arc<Row>> {
        let mut marking = Marking {
            rows,
            batch: None,
            again: Vec::new(),
            again_seen: FxHashSet::default(),
        };
        for row in rows {
            let event = row.event();
            let Some(campaign) = event.campaign_id.as_deref().filter(|c| !c.is_empty()) else {
                continue;
            };
            if event.class != "human" || event.kind != "click" {
                continue;
            }
            let now = event.time;
            self.newest = self.newest.max(now);
            let recipient = event.recipient_index.unwrap_or(-1);
            // With variants, the recipient's own message's links: a variant with fewer links
            // than another is judged by its own count.
            let wanted = links.get(campaign).map_or(0, |l| match row.variant_index() {
                // Known since the variants were assigned: no second hash of the recipient.
                Some(variant) => l.of_variant(variant),
                None => l.of(recipient),
            });
            if wanted >= 2 && recipient >= 0 {
                let key = self.keys.hash_one((campaign, recipient));
                let hits = recent(&mut self.messages, key, now - self.sibling_ms);
                hits.push(Arc::clone(row));
                // Fewer hits than links cannot cover them all: no need to count distinct ones.
                if i64::try_from(hits.len()).unwrap_or(i64::MAX) >= wanted {
                    let mut seen_links: Vec<Option<i32>> = hits.iter().map(|hit| hit.event().link_index).collect();
                    seen_links.sort_unstable();
                    seen_links.dedup();
                    if i64::try_from(seen_links.len()).unwrap_or(i64::MAX) >= wanted {
                        marking.mark(hits, MARK_SIBLING);
                    }
                }
            }
            let ip = event.ip.as_deref().unwrap_or("");
            if self.sweep_recipients > 0 && !ip.is_empty() {
                let key = self.keys.hash_one((ip, event.user_agent.as_deref().unwrap_or("")));
                let seen = recent(&mut self.clients, key, now - self.sweep_ms);
                seen.push(Arc::clone(row));
                // Fewer hits than the threshold cannot reach it: no need to count distinct ones.
                if seen.len() < self.sweep_recipients {
                    continue;
                }
                let mut recipients: Vec<(&str, Option<i64>)> = seen
                    .iter()
                    .map(|hit| {
                        (
                            hit.event().campaign_id.as_deref().unwrap_or(""),
                            hit.event().recipient_index,
                        )
                    })
                    .collect();
                recipients.sort_unstable();
                recipients.dedup();
                if recipients.len() >= self.sweep_recipients {
                    marking.mark(seen, MARK_SWEEP);
                }
            }
        }
        if self.newest - self.pruned > PRUNE_EVERY_MS {
            self.prune();
        }
        marking.again
    }

    /// Forgets what no rule can use any more, so memory follows the traffic of a few seconds.
    fn prune(&mut self) {
        let horizon = self.newest - self.sibling_ms.max(self.sweep_ms);
        let stale = |hits: &Hits| hits.last().is_none_or(|hit| hit.event().time < horizon);
        self.messages.retain(|_, hits| !stale(hits));
        self.clients.retain(|_, hits| !stale(hits));
        self.pruned = self.newest;
    }
}

fn recent(table: &mut FxHashMap<Key, Hits>, key: Key, since: i64) -> &mut Hits {
    let hits = table.entry(key).or_default();
    if hits.first().is_some_and(|hit| hit.event().time < since) {
        hits.retain(|hit| hit.event().time >= since);
    }
    hits
}

#[cfg(test)]
mod tests {
    use crate::eventrows::{EventDecoder, SinkOptions};
    use std::collections::HashMap;

    fn click(n: u32, recipient: i64, link: i32, time: i64, ip: &str) -> (Vec<u8>, Option<Vec<u8>>) {
        let raw = format!(
            r#"{{"v":1,"event_id":"0190a6e4-7c2b-7000-8000-{n:012}","time":{time},"type":"click","class":"human",
            "campaign_id":"c1","recipient_index":{recipient},"link_index":{link},"ip":"{ip}","user_agent":"UA"}}"#
        );
        (format!("{n}-0").into_bytes(), Some(raw.into_bytes()))
    }

    #[test]
    fn a_burst_across_batches_reemits_the_earlier_events() {
        let mut decoder = EventDecoder::new(SinkOptions::default());
        let links = HashMap::from([("c1".to_owned(), 3.into())]);
        let first = decoder.decode(vec![
            click(1, 1, 0, 1_000, "192.0.2.1"),
            click(2, 1, 1, 1_400, "192.0.2.2"),
        ]);
        let rows = decoder.encode(&first, &links, HashMap::new());
        assert_eq!(rows.revisions(), &[0, 0]);
        let second = decoder.decode(vec![click(3, 1, 2, 1_800, "192.0.2.3")]);
        let rows = decoder.encode(&second, &links, HashMap::new());
        assert_eq!(rows.revisions(), &[1, 1, 1]);
        assert_eq!(rows.batch_len(), 1);
        assert_eq!(rows.rows()[1].reclassified(), Some(super::SIBLING_BURST));
    }

    #[test]
    fn a_click_is_forgotten_soon_after_no_window_can_use_it() {
        let mut decoder = EventDecoder::new(SinkOptions::default());
        let t0 = 1_700_000_000_000;
        let first = decoder.decode(vec![click(1, 1, 0, t0, "192.0.2.1")]);
        drop(decoder.encode(&first, &HashMap::new(), HashMap::new()));
        let held = || std::sync::Arc::strong_count(&first.rows()[0]) - 1; // besides the batch
        assert_eq!(held(), 1, "the sweep rule remembers it");
        // Past the sweep window (5 s) and one prune period (1 s): gone, though no 10 s passed.
        let later = decoder.decode(vec![click(2, 2, 0, t0 + 6_100, "192.0.2.2")]);
        drop(decoder.encode(&later, &HashMap::new(), HashMap::new()));
        assert_eq!(held(), 0);
    }

    #[test]
    fn slow_clicks_and_one_link_campaigns_stay_human() {
        let mut decoder = EventDecoder::new(SinkOptions::default());
        let batch = decoder.decode(vec![
            click(1, 1, 0, 1_000, "192.0.2.1"),
            click(2, 1, 1, 6_000, "192.0.2.2"),
            click(3, 1, 2, 11_000, "192.0.2.3"),
        ]);
        let rows = decoder.encode(&batch, &HashMap::from([("c1".to_owned(), 3.into())]), HashMap::new());
        assert_eq!(rows.revisions(), &[0, 0, 0]);
        let rows = decoder.encode(&batch, &HashMap::new(), HashMap::new());
        assert_eq!(rows.revisions(), &[0, 0, 0]);
    }

    #[test]
    fn one_client_on_five_recipients_is_a_sweep() {
        let mut decoder = EventDecoder::new(SinkOptions::default());
        let clicks = (0..5)
            .map(|r: u32| click(r + 1, i64::from(r), 0, 1_000 + i64::from(r) * 200, "198.51.100.9"))
            .collect();
        let batch = decoder.decode(clicks);
        let rows = decoder.encode(&batch, &HashMap::new(), HashMap::new());
        assert_eq!(rows.revisions(), &[1, 1, 1, 1, 1]);
        assert!(batch.rows().iter().all(|row| row.reclassified() == Some(super::SWEEP)));
    }

    #[test]
    fn a_variant_is_judged_by_its_own_links() {
        use super::CampaignLinks;
        use crate::variants::VariantAssigner;
        use std::sync::Arc;

        let assigner = VariantAssigner::new(b"seed", &[1.0, 1.0, 1.0]).unwrap();
        let (two, one) = {
            let split = assigner.variants_of(0, 100);
            let r = |v| i64::try_from(split.iter().position(|&x| x == v).unwrap()).unwrap();
            (r(1), r(2))
        };
        // Variants of 3, 2 and 1 links: the campaign's 3 would never catch the 2-link variant.
        let links = HashMap::from([(
            "c1".to_owned(),
            CampaignLinks::Variants {
                assigner: Arc::new(assigner),
                links: vec![3, 2, 1],
                names: ["A", "B", "C"].map(Arc::from).to_vec(),
            },
        )]);
        let mut decoder = EventDecoder::new(SinkOptions::default());
        let batch = decoder.decode(vec![
            click(1, two, 0, 1_000, "192.0.2.1"),
            click(2, two, 1, 1_300, "192.0.2.2"),
            click(3, one, 0, 1_000, "192.0.2.3"),
            click(4, one, 0, 1_200, "192.0.2.4"),
        ]);
        let rows = decoder.encode(&batch, &links, HashMap::new());
        let reasons: Vec<_> = rows.rows().iter().map(|row| row.reclassified()).collect();
        assert_eq!(
            reasons,
            [Some(super::SIBLING_BURST), Some(super::SIBLING_BURST), None, None]
        );
        assert_eq!(links["c1"].of(-1), 0);
        assert_eq!(links["c1"].variant(two).map(|(v, n)| (v, &**n)), Some((1, "B")));
        assert_eq!(links["c1"].of_variant(2), 1);
        assert_eq!(links["c1"].variant(-1), None);
        assert_eq!(CampaignLinks::Count(3).variant(two), None);
    }

    fn event(n: u32, campaign: &str, recipient: i64, kind: &str, class: &str, ip: &str) -> (Vec<u8>, Option<Vec<u8>>) {
        let raw = format!(
            r#"{{"v":1,"event_id":"0190a6e4-7c2b-7000-8000-{n:012}","time":{},"type":"{kind}","class":"{class}",
            "campaign_id":"{campaign}","recipient_index":{recipient},"link_index":0,"ip":"{ip}","user_agent":"UA"}}"#,
            1_000 + i64::from(n) * 100
        );
        (format!("{n}-0").into_bytes(), Some(raw.into_bytes()))
    }

    #[test]
    fn every_event_of_a_recipient_carries_the_variant_and_keeps_it_when_emitted_again() {
        use super::CampaignLinks;
        use crate::variants::VariantAssigner;
        use std::sync::Arc;

        let assigner = Arc::new(VariantAssigner::new(b"seed", &[1.0, 2.0]).unwrap());
        let ab = CampaignLinks::Variants {
            assigner: Arc::clone(&assigner),
            links: vec![1, 1],
            names: vec![Arc::from("A"), Arc::from("Bee")],
        };
        let name = |r: u64| ["A", "Bee"][assigner.variant_of(r)];
        let links = HashMap::from([("ab".to_owned(), ab), ("one".to_owned(), 1.into())]);
        let mut decoder = EventDecoder::new(SinkOptions::default());
        // Every class and type gets it; no recipient, another campaign or an unknown one: none.
        let batch = decoder.decode(vec![
            event(1, "ab", 0, "click", "human", "203.0.113.1"),
            event(2, "ab", 1, "click", "preview", "203.0.113.2"),
            event(3, "ab", 2, "click", "bot", "203.0.113.3"),
            event(4, "ab", 3, "conversion", "human", ""),
            event(5, "ab", -1, "click", "bot", "203.0.113.5"),
            event(6, "one", 4, "click", "human", "203.0.113.6"),
            event(7, "unknown", 4, "click", "human", "203.0.113.7"),
            event(8, "ab", 4, "click", "human", "203.0.113.8"),
        ]);
        let rows = decoder.encode(&batch, &links, HashMap::new());
        let variants: Vec<&str> = rows.rows().iter().map(|row| row.variant()).collect();
        assert_eq!(variants, [name(0), name(1), name(2), name(3), "", "", "", name(4)],);
        assert!(variants.contains(&"A") && variants.contains(&"Bee"));

        // One client on four recipients of "ab", then on a fifth of another campaign in the next
        // batch, whose campaigns are all the encoder is told of: the sweep emits the four again,
        // with their variants.
        let mut decoder = EventDecoder::new(SinkOptions::default());
        let first = decoder.decode(
            (0..4)
                .map(|r: u32| event(r + 1, "ab", i64::from(r), "click", "human", "198.51.100.9"))
                .collect(),
        );
        decoder.encode(&first, &links, HashMap::new());
        let second = decoder.decode(vec![event(5, "one", 9, "click", "human", "198.51.100.9")]);
        let rows = decoder.encode(&second, &HashMap::from([("one".to_owned(), 1.into())]), HashMap::new());
        assert_eq!(rows.revisions(), &[1, 1, 1, 1, 1]);
        let again: Vec<&str> = rows.rows()[1..].iter().map(|row| row.variant()).collect();
        assert_eq!(again, (0..4).map(name).collect::<Vec<_>>());
        assert_eq!(rows.rows()[0].variant(), "");
    }
}
