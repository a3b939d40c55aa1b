//! Table-driven tests of the user-agent parser.

use shortcore::useragent::{parse_user_agent, Device};

/// `(user agent, browser, browser major, OS, OS major, device)`.
#[allow(clippy::type_complexity)]
const CASES: &[(&str, Option<&str>, Option<&str>, Option<&str>, Option<&str>, Device)] = &[
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        Some("Mobile Safari"), Some("17"), Some("iOS"), Some("17"), Device::Mobile,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_7_10 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1",
        Some("Mobile Safari"), Some("16"), Some("iOS"), Some("16"), Device::Tablet,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        Some("Chrome"), Some("131"), Some("iOS"), Some("18"), Device::Mobile,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.179 Mobile Safari/537.36",
        Some("Chrome"), Some("124"), Some("Android"), Some("14"), Device::Mobile,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        Some("Chrome"), Some("124"), Some("Android"), Some("13"), Device::Tablet,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.122 Mobile Safari/537.36",
        Some("Android WebView"), Some("126"), Some("Android"), Some("14"), Device::Mobile,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-A546B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.122 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/452.0.0.44.109;]",
        Some("Facebook"), Some("452"), Some("Android"), Some("14"), Device::Mobile,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 312.0.0.32.112 (iPhone15,3; iOS 17_5; en_GB; en; scale=3.00; 1290x2796; 548339486)",
        Some("Instagram"), Some("312"), Some("iOS"), Some("17"), Device::Mobile,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        Some("Samsung Internet"), Some("26"), Some("Android"), Some("14"), Device::Mobile,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70",
        Some("Edge"), Some("131"), Some("Windows"), Some("10"), Device::Desktop,
    ),
    (
        "Mozilla/5.0 (Windows NT 6.3; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
        Some("Firefox"), Some("115"), Some("Windows"), Some("8.1"), Device::Desktop,
    ),
    (
        "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
        Some("Internet Explorer"), Some("11"), Some("Windows"), Some("7"), Device::Desktop,
    ),
    (
        "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)",
        Some("Internet Explorer"), Some("6"), Some("Windows"), Some("XP"), Device::Desktop,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        Some("Safari"), Some("18"), Some("macOS"), Some("10"), Device::Desktop,
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        Some("Chrome"), Some("120"), Some("Chrome OS"), None, Device::Desktop,
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        Some("Firefox"), Some("133"), Some("Ubuntu"), None, Device::Desktop,
    ),
    (
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
        Some("Samsung Internet"), Some("4"), Some("Tizen"), Some("6"), Device::Other,
    ),
    (
        "Mozilla/5.0 (compatible; MSIE 9.0; Windows Phone OS 7.5; Trident/5.0; IEMobile/9.0; HTC; Radar 4G)",
        Some("IE Mobile"), Some("9"), Some("Windows Phone"), Some("7"), Device::Mobile,
    ),
    (
        "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
        Some("Opera Mini"), Some("9"), Some("Symbian"), None, Device::Mobile,
    ),
    ("curl/8.5.0", None, None, None, None, Device::Bot),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", None, None, None, None, Device::Bot),
    ("", None, None, None, None, Device::Other),
];

#[test]
fn parses_browser_os_and_device() {
    for &(ua, browser, browser_version, os, os_version, device) in CASES {
        let parsed = parse_user_agent(ua);
        let got = (
            parsed.browser(),
            parsed.browser_version().as_ref().map(|v| v.as_str().to_owned()),
            parsed.os(),
            parsed.os_version().as_ref().map(|v| v.as_str().to_owned()),
            parsed.device(),
        );
        let want = (
            browser,
            browser_version.map(str::to_owned),
            os,
            os_version.map(str::to_owned),
            device,
        );
        assert_eq!(got, want, "{ua}");
    }
}

#[test]
fn never_panics_on_odd_bytes() {
    for ua in [
        "Version/",
        "Chrome/",
        "Windows NT ",
        "Android",
        "MSIE",
        "rv:",
        "(((",
        "\u{fffd}\u{0}",
    ] {
        let _ = parse_user_agent(ua);
    }
}
