//! Table-driven tests of the classifier, and its accuracy on the labelled data.
//!
//! `tests/data/ua-sample.jsonl` (at the repository root, shared with pytest) is the project's
//! own labelled fixture; `../shared/data/ua-dev.jsonl`, beside the repository, is the full
//! development set, checked against the accuracy targets when it is present.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shortcore::classify::{Classifier, Label, Request, RequestHeaders};

/// `(user agent, class, reason)`: the user agent alone decides.
const USER_AGENTS: &[(&str, Label, &str)] = &[
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", Label::Human, "human"),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", Label::Human, "human"),
    ("Mozilla/5.0 (Linux; Android 8.1.0; XBot_Senior Build/O11019) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/65.0.3325.109 Mobile Safari/537.36", Label::Human, "human"),
    ("Mozilla/5.0 (Linux; Android 13; Discovery SE) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.0.0 Mobile Safari/537.36", Label::Human, "human"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 250.0.0.21.109 (iPhone14,5; iOS 16_0; en_US; en; scale=3.00; 1170x2532; 394071253)", Label::Human, "human"),
    ("Mozilla/5.0 (Linux; Android 12; SM-G991B Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/445.0.0.34.118;]", Label::Human, "human"),
    ("WhatsApp/2.23.20.0 A", Label::Preview, "preview:whatsapp"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", Label::Preview, "preview:facebook"),
    ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", Label::Preview, "preview:discord"),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", Label::Preview, "preview:slack"),
    ("TelegramBot (like TwitterBot)", Label::Preview, "preview:telegram"),
    ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Jakarta Commons-HttpClient/4.3 +http://www.linkedin.com)", Label::Preview, "preview:linkedin"),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Mobile Safari/537.36 GoogleMessages/20.1", Label::Preview, "preview:google-messages"),
    ("python-requests/2.32.3", Label::Bot, "bot:ua:python-requests"),
    ("curl/8.5.0", Label::Bot, "bot:ua:curl"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Label::Bot, "bot:ua:google"),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", Label::Bot, "bot:ua:ahrefs"),
    ("Mozilla/5.0 (compatible; SomeNewCrawler/0.1)", Label::Bot, "bot:ua:crawl"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36", Label::Bot, "bot:ua:headlesschrome"),
    ("Barracuda Sentinel (EE)", Label::Bot, "bot:ua:barracuda"),
    ("SomeTool/1.0", Label::Bot, "bot:ua:non-browser"),
    ("", Label::Bot, "bot:no-ua"),
    ("   ", Label::Bot, "bot:no-ua"),
];

const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

#[test]
fn user_agents() {
    let classifier = Classifier::default();
    for &(ua, label, reason) in USER_AGENTS {
        let got = classifier.classify(&Request::new(Some(ua)));
        assert_eq!((got.label(), got.reason()), (label, reason), "{ua}");
    }
}

/// `(method, headers, seconds since send, reason)` for a desktop Chrome user agent.
#[allow(clippy::type_complexity)]
const REQUESTS: &[(&str, &[(&str, &str)], Option<f64>, &str)] = &[
    ("GET", &[], None, "human"),
    (
        "get",
        &[("Accept", "text/html"), ("Accept-Language", "en")],
        Some(30.0),
        "human",
    ),
    ("HEAD", &[], None, "bot:head"),
    ("OPTIONS", &[], None, "bot:method"),
    (
        "GET",
        &[("Sec-Purpose", "prefetch;anonymous-client-ip")],
        None,
        "bot:prefetch",
    ),
    ("GET", &[("purpose", "prefetch")], None, "bot:prefetch"),
    ("GET", &[("X-Moz", "prefetch")], None, "bot:prefetch"),
    ("GET", &[("X-Purpose", "preview")], None, "bot:prefetch"),
    (
        "GET",
        &[("Accept", "*/*"), ("Sec-CH-UA", "\"HeadlessChrome\";v=\"113\"")],
        None,
        "bot:headless",
    ),
    (
        "GET",
        &[("Accept", "*/*"), ("Referer", "https://statics.teams.cdn.office.net/")],
        None,
        "bot:referer:microsoft-teams",
    ),
    (
        "GET",
        &[("Accept", "*/*"), ("From", "googlebot(at)googlebot.com@")],
        None,
        "bot:from",
    ),
    ("GET", &[("User-Agent", CHROME)], None, "bot:no-browser-headers"),
    ("GET", &[("Accept", "text/html")], Some(0.5), "bot:too-soon"),
    ("GET", &[("Accept", "text/html")], Some(-3.0), "bot:too-soon"),
    ("GET", &[("Accept", "text/html")], Some(2.0), "human"),
];

#[test]
fn methods_headers_and_timing() {
    let classifier = Classifier::default();
    for &(method, pairs, seconds, reason) in REQUESTS {
        let mut request = Request::new(Some(CHROME));
        request.method = method;
        request.seconds_since_send = seconds;
        for (name, value) in pairs {
            request.headers.insert(name.as_bytes(), value.as_bytes());
        }
        assert_eq!(
            classifier.classify(&request).reason(),
            reason,
            "{method} {pairs:?} {seconds:?}"
        );
    }
}

#[test]
fn user_agent_from_headers_and_client_hints() {
    let classifier = Classifier::default();
    let mut headers = RequestHeaders::new();
    headers.insert(b"user-agent", b"python-requests/2.31");
    headers.insert(b"accept", b"*/*");
    let request = Request {
        headers,
        ..Request::new(None)
    };
    assert_eq!(classifier.classify(&request).reason(), "bot:ua:python-requests");

    let mut headers = RequestHeaders::new();
    headers.insert(
        b"sec-ch-ua",
        br#""Opera";v="81", " Not;A Brand";v="99", "Chromium";v="95""#,
    );
    let got = classifier.classify(&Request {
        headers,
        ..Request::new(Some(""))
    });
    assert_eq!((got.label(), got.user_agent().browser()), (Label::Human, Some("Opera")));
}

#[test]
fn threshold_is_configurable() {
    let mut request = Request::new(Some(CHROME));
    request.seconds_since_send = Some(3.0);
    assert_eq!(Classifier::default().classify(&request).label(), Label::Human);
    assert_eq!(
        Classifier::new(5.0).unwrap().classify(&request).reason(),
        "bot:too-soon"
    );
    assert_eq!(Classifier::new(0.0).unwrap().classify(&request).label(), Label::Human);
    assert!(Classifier::new(f64::NAN).is_err());
}

#[test]
fn odd_input_never_panics() {
    let classifier = Classifier::default();
    let huge = "Mozilla/5.0 (".repeat(50_000);
    let bytes = String::from_utf8_lossy(b"Mozilla/5.0 \xff\xfe (Linux; Android \xc3(").into_owned();
    for ua in [
        huge.as_str(),
        bytes.as_str(),
        "(",
        ")",
        "((((",
        "Mozilla/5.0 (Linux; Android",
        "\0\0\0",
    ] {
        let _ = classifier.classify(&Request::new(Some(ua)));
    }
}

/// One labelled row of a JSON-lines data file.
struct Row {
    ua: String,
    label: Label,
    method: String,
    headers: Vec<(String, String)>,
    seconds_since_send: Option<f64>,
}

fn read_rows(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let label = match value["label"].as_str() {
                Some("human") => Label::Human,
                Some("preview") => Label::Preview,
                Some("bot") => Label::Bot,
                other => panic!("bad label {other:?} in {line}"),
            };
            let headers = value["headers"]
                .as_object()
                .map(|map| {
                    map.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            Row {
                ua: value["ua"].as_str().unwrap_or("").to_owned(),
                label,
                method: value["method"].as_str().unwrap_or("GET").to_owned(),
                headers,
                seconds_since_send: value["seconds_since_send"].as_f64(),
            }
        })
        .collect()
}

/// Share of each class classified right, and the rows that were not.
fn score(rows: &[Row]) -> (BTreeMap<&'static str, (usize, usize)>, Vec<String>) {
    let classifier = Classifier::default();
    let mut per_class = BTreeMap::new();
    let mut wrong = Vec::new();
    for row in rows {
        let mut request = Request::new(Some(&row.ua));
        request.method = &row.method;
        request.seconds_since_send = row.seconds_since_send;
        for (name, value) in &row.headers {
            request.headers.insert(name.as_bytes(), value.as_bytes());
        }
        let got = classifier.classify(&request);
        let entry = per_class.entry(row.label.as_str()).or_insert((0, 0));
        entry.1 += 1;
        if got.label() == row.label {
            entry.0 += 1;
        } else {
            wrong.push(format!(
                "{} -> {} ({}): {}",
                row.label,
                got.label(),
                got.reason(),
                row.ua
            ));
        }
    }
    (per_class, wrong)
}

fn assert_targets(rows: &[Row], what: &str) {
    let (per_class, wrong) = score(rows);
    if std::env::var_os("SHORTCORE_SHOW_MISSES").is_some() {
        for line in &wrong {
            eprintln!("{line}");
        }
    }
    for (class, target) in [("human", 0.995), ("bot", 0.98), ("preview", 0.95)] {
        let (right, total) = per_class.get(class).copied().unwrap_or((0, 0));
        let share = right as f64 / total.max(1) as f64;
        eprintln!("{what}: {class} {right}/{total} = {:.2}%", share * 100.0);
        assert!(
            total > 0 && share >= target,
            "{what}: {class} accuracy {share:.4} below {target}"
        );
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn accuracy_on_the_project_sample() {
    assert_targets(&read_rows(&repo_root().join("tests/data/ua-sample.jsonl")), "ua-sample");
}

#[test]
fn accuracy_on_the_dev_set() {
    let path = repo_root().join("../shared/data/ua-dev.jsonl");
    if !path.exists() {
        eprintln!(
            "skipped: {} is absent (it lives beside the repository in CI)",
            path.display()
        );
        return;
    }
    assert_targets(&read_rows(&path), "ua-dev");
}
