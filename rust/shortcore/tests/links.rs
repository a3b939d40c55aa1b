//! Link detection against the shared table `tests/data/links.jsonl`, and message rewriting.

use shortcore::links::{char_offsets, find_links, MessageTemplate, RewriteOptions, SchemeMode};
use shortcore::sms::measure;

const CASES: &str = include_str!("../../../tests/data/links.jsonl");

#[test]
fn detection_table() {
    let mut failures = Vec::new();
    for line in CASES.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = case["text"].as_str().unwrap();
        let want: Vec<&str> = case["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let got: Vec<&str> = find_links(text).iter().map(|l| l.as_written(text)).collect();
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?}", case["name"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn destinations_are_absolute() {
    let links = find_links("a www.example.com/x b HTTP://example.org");
    let destinations: Vec<&str> = links.iter().map(|l| l.destination.as_str()).collect();
    assert_eq!(destinations, ["https://www.example.com/x", "HTTP://example.org"]);
}

#[test]
fn rewrite_keeps_order_and_reports_offsets() {
    let text = "Привет! Sale https://shop.example/a and www.shop.example/b today";
    let template = MessageTemplate::new(text, RewriteOptions::default());
    assert_eq!(
        template.destinations(),
        ["https://shop.example/a", "https://www.shop.example/b"]
    );
    let message = template
        .render(&["https://ul.example/AAAAAAA", "https://ul.example/BBBBBBB"])
        .unwrap();
    assert_eq!(
        message.text,
        "Привет! Sale https://ul.example/AAAAAAA and https://ul.example/BBBBBBB today"
    );
    let chars: Vec<char> = message.text.chars().collect();
    let spans: Vec<String> = message
        .links
        .iter()
        .map(|&(s, e)| chars[s..e].iter().collect())
        .collect();
    assert_eq!(spans, ["https://ul.example/AAAAAAA", "https://ul.example/BBBBBBB"]);
    assert_eq!(message.before, measure(text));
    assert_eq!(message.after, measure(&message.text));
}

#[test]
fn rewrite_drop_scheme_and_only_last() {
    let text = "One https://a.example/1 two https://b.example/2";
    let drop = MessageTemplate::new(
        text,
        RewriteOptions {
            scheme: SchemeMode::Drop,
            only_last: false,
        },
    );
    let message = drop.render(&["https://ul.example/x", "http://ul.example/y"]).unwrap();
    assert_eq!(message.text, "One ul.example/x two ul.example/y");

    let last = MessageTemplate::new(
        text,
        RewriteOptions {
            scheme: SchemeMode::Keep,
            only_last: true,
        },
    );
    assert_eq!(last.destinations(), ["https://b.example/2"]);
    let message = last.render(&["https://ul.example/z"]).unwrap();
    assert_eq!(message.text, "One https://a.example/1 two https://ul.example/z");
    assert_eq!(message.links, [(28, 48)]);
}

#[test]
fn rewrite_checks_the_number_of_short_urls() {
    let template = MessageTemplate::new("a https://a.example b", RewriteOptions::default());
    assert!(template.render::<&str>(&[]).unwrap_err().is_invalid_argument());
    assert!(template.render(&["x", "y"]).unwrap_err().is_invalid_argument());
    let none = MessageTemplate::new("no links here", RewriteOptions::default());
    assert_eq!(none.render::<&str>(&[]).unwrap().text, "no links here");
}

#[test]
fn fit_drops_schemes_only_where_it_saves_a_segment() {
    let short = ["https://ul.example/AAAAAAA", "https://ul.example/BBBBBBB"];
    let fit = RewriteOptions {
        scheme: SchemeMode::Fit,
        only_last: false,
    };
    // Room to spare: nothing is dropped.
    let roomy = MessageTemplate::new("A https://a.example/1 B https://b.example/2", fit)
        .render(&short)
        .unwrap();
    assert_eq!(roomy.text, "A https://ul.example/AAAAAAA B https://ul.example/BBBBBBB");
    // 160 - 2 * 26 = 108 characters of text fit with both schemes; 116 fit with both dropped.
    // With 112, dropping the last scheme (8 characters) is enough for one segment.
    let filler = "x".repeat(112 - 4);
    let text = format!("{filler} A https://a.example/1 B https://b.example/2");
    let message = MessageTemplate::new(&text, fit).render(&short).unwrap();
    assert_eq!(message.after.segments, 1);
    assert!(
        message
            .text
            .ends_with("A https://ul.example/AAAAAAA B ul.example/BBBBBBB"),
        "{}",
        message.text
    );
    // Far beyond one segment whatever is dropped: keep every scheme.
    let long = format!("{} https://a.example/1", "y".repeat(400));
    let message = MessageTemplate::new(&long, fit).render(&short[..1]).unwrap();
    assert!(message.text.ends_with(" https://ul.example/AAAAAAA"));
}

#[test]
fn char_offsets_follow_multibyte_text() {
    let text = "é😀a";
    assert_eq!(char_offsets(text, [0, 2, 6, 7]), [0, 1, 2, 3]);
}
