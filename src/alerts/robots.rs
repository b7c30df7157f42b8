//! The chat robots of SPEC 18, each as its vendor documents it: the JSON
//! body of a message, the signature of a request, and how the robot says
//! that it refused one.
//!
//! | kind | body | signing (`secret`) | refusal |
//! |---|---|---|---|
//! | dingtalk | `{"msgtype":"markdown","markdown":{"title","text"},"at":{…}}` | `&timestamp=<ms>&sign=` on the URL: base64(HMAC-SHA256(key = secret, "<ms>\n<secret>")), URL-encoded | HTTP 200 with `errcode` ≠ 0 |
//! | wecom | `{"msgtype":"markdown","markdown":{"content"}}` (`text` with `mentioned_mobile_list` when phone numbers are mentioned) | none | HTTP 200 with `errcode` ≠ 0 |
//! | feishu | `{"msg_type":"interactive","card":{…}}` | `"timestamp":"<s>","sign":` in the body: base64(HMAC-SHA256(key = "<s>\n<secret>", empty message)) | HTTP 200 with `code` (or `StatusCode`) ≠ 0 |
//! | slack | `{"text","blocks"}` | none | a non-2xx status with a short text body |
//!
//! Signatures are made when a request is sent, never stored: both vendors
//! refuse a timestamp more than an hour old, and a notification may wait
//! longer than that in the outbox.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::alerts::WebhookKind;
use crate::period::Millis;

/// A message rendered from a template: a one-line title and a Markdown text.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub title: String,
    pub markdown: String,
}

/// The JSON body of a chat message for `kind` (not for `json`, whose body is
/// the SPEC 9 payload), with `mention` turned into the vendor's @-mentions.
pub fn body(kind: WebhookKind, msg: &Message, mention: &[String]) -> String {
    let value = match kind {
        WebhookKind::Json => json!({"title": msg.title, "text": msg.markdown}),
        WebhookKind::Dingtalk => dingtalk(msg, mention),
        WebhookKind::Wecom => wecom(msg, mention),
        WebhookKind::Feishu => feishu(msg, mention),
        WebhookKind::Slack => slack(msg, mention),
    };
    value.to_string()
}

/// A phone number ("13800000000", "+8613800000000") rather than a user id.
fn is_mobile(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_all(s: &str) -> bool {
    matches!(s, "all" | "@all")
}

/// DingTalk rings only people whose "@<mobile>" (or "@<userId>") is in the text.
fn dingtalk(msg: &Message, mention: &[String]) -> Value {
    let mobiles: Vec<&String> = mention.iter().filter(|m| is_mobile(m)).collect();
    let users: Vec<&String> = mention
        .iter()
        .filter(|m| !is_mobile(m) && !is_all(m))
        .collect();
    let mut text = truncate(&msg.markdown, 18_000);
    if !mention.is_empty() {
        let tags: Vec<String> = mention
            .iter()
            .filter(|m| !is_all(m))
            .map(|m| format!("@{m}"))
            .collect();
        if !tags.is_empty() {
            text = format!("{}\n\n{}", text.trim_end(), tags.join(" "));
        }
    }
    json!({
        "msgtype": "markdown",
        "markdown": {"title": msg.title, "text": text},
        "at": {
            "atMobiles": mobiles,
            "atUserIds": users,
            "isAtAll": mention.iter().any(|m| is_all(m)),
        }
    })
}

/// WeCom markdown mentions user ids as `<@userid>`; phone numbers ring only
/// in a text message's `mentioned_mobile_list`, so those make it a text.
fn wecom(msg: &Message, mention: &[String]) -> Value {
    let mobiles: Vec<&String> = mention.iter().filter(|m| is_mobile(m)).collect();
    if !mobiles.is_empty() {
        let users: Vec<String> = mention
            .iter()
            .filter(|m| !is_mobile(m))
            .map(|m| if is_all(m) { "@all".into() } else { m.clone() })
            .collect();
        return json!({
            "msgtype": "text",
            "text": {
                "content": truncate(&plain_text(&msg.markdown), 2000),
                "mentioned_list": users,
                "mentioned_mobile_list": mobiles,
            }
        });
    }
    let mut content = msg.markdown.trim_end().to_string();
    let tags: Vec<String> = mention
        .iter()
        .map(|m| {
            if is_all(m) {
                "<@all>".to_string()
            } else {
                format!("<@{m}>")
            }
        })
        .collect();
    if !tags.is_empty() {
        content = format!("{content}\n{}", tags.join(" "));
    }
    json!({"msgtype": "markdown", "markdown": {"content": truncate(&content, 4000)}})
}

/// A Feishu message card: the title in the header, the text in a markdown
/// element (headings become bold lines: the card's markdown has none).
fn feishu(msg: &Message, mention: &[String]) -> Value {
    let mut content = headings_to_bold(&msg.markdown, "**");
    let tags: Vec<String> = mention
        .iter()
        .map(|m| {
            if is_all(m) {
                "<at id=all></at>".to_string()
            } else {
                format!("<at id={m}></at>")
            }
        })
        .collect();
    if !tags.is_empty() {
        content = format!("{}\n{}", content.trim_end(), tags.join(" "));
    }
    let template = if msg.title.contains('✅') {
        "green"
    } else if msg.title.contains('🟠') {
        "orange"
    } else {
        "red"
    };
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {
                "title": {"tag": "plain_text", "content": msg.title},
                "template": template,
            },
            "elements": [{"tag": "markdown", "content": truncate(&content, 20_000)}],
        }
    })
}

/// Slack: `text` is the notification fallback, `blocks` the message in
/// mrkdwn (single-asterisk bold, `<url|text>` links), in sections of at
/// most 3000 characters as Slack requires.
fn slack(msg: &Message, mention: &[String]) -> Value {
    let mut text = to_mrkdwn(&msg.markdown);
    let tags: Vec<String> = mention
        .iter()
        .map(|m| match m.as_str() {
            "all" | "@all" | "channel" => "<!channel>".to_string(),
            "here" => "<!here>".to_string(),
            m => format!("<@{m}>"),
        })
        .collect();
    if !tags.is_empty() {
        text = format!("{}\n{}", text.trim_end(), tags.join(" "));
    }
    let mut blocks = Vec::new();
    for chunk in chunks(&text, 3000).into_iter().take(49) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": chunk}}));
    }
    json!({"text": msg.title, "blocks": blocks})
}

/// At most `max` bytes, cut at a character boundary, with "…" when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Pieces of at most `max` characters, cut at line ends where possible.
fn chunks(s: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for line in s.split_inclusive('\n') {
        if cur.chars().count() + line.chars().count() > max && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if line.chars().count() > max {
            out.push(line.chars().take(max).collect());
        } else {
            cur.push_str(line);
        }
    }
    if !cur.trim().is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

fn headings_to_bold(md: &str, bold: &str) -> String {
    md.lines()
        .map(|l| {
            let t = l.trim_start();
            match t.strip_prefix('#') {
                Some(rest) => {
                    let h = rest.trim_start_matches('#').trim().replace("**", "");
                    format!("{bold}{h}{bold}")
                }
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Markdown links `[text](url)` rewritten by `f(text, url)`.
fn rewrite_links(s: &str, f: impl Fn(&str, &str) -> String) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let parsed = after.find("](").and_then(|mid| {
            let url_part = &after[mid + 2..];
            url_part
                .find(')')
                .map(|close| (&after[..mid], &url_part[..close], mid + 2 + close + 1))
        });
        match parsed {
            Some((text, url, used)) if !text.contains('\n') => {
                out.push_str(&rest[..open]);
                out.push_str(&f(text, url));
                rest = &after[used..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn to_mrkdwn(md: &str) -> String {
    let bold = headings_to_bold(md, "**").replace("**", "*");
    rewrite_links(&bold, |text, url| format!("<{url}|{text}>"))
}

fn plain_text(md: &str) -> String {
    let flat = headings_to_bold(md, "").replace("**", "");
    rewrite_links(&flat, |text, url| format!("{text} {url}"))
}

/// HMAC-SHA256 of `message` keyed with `key`, base64.
fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    BASE64.encode(mac.finalize().into_bytes())
}

/// DingTalk's `sign` for a timestamp in milliseconds (before URL-encoding).
pub fn dingtalk_sign(secret: &str, timestamp_ms: Millis) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    hmac_base64(secret.as_bytes(), to_sign.as_bytes())
}

/// Feishu's `sign` for a timestamp in seconds: the string to sign is the
/// HMAC key, over an empty message.
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    hmac_base64(key.as_bytes(), b"")
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL and body of one request, signed at `now` when the robot has a secret.
pub fn signed(
    kind: WebhookKind,
    url: &str,
    body: &str,
    secret: Option<&str>,
    now: Millis,
) -> (String, String) {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return (url.to_string(), body.to_string());
    };
    match kind {
        WebhookKind::Dingtalk => {
            let sep = if url.contains('?') { '&' } else { '?' };
            let sign = url_encode(&dingtalk_sign(secret, now));
            (
                format!("{url}{sep}timestamp={now}&sign={sign}"),
                body.to_string(),
            )
        }
        WebhookKind::Feishu => {
            let ts = now.div_euclid(1000);
            let sign = feishu_sign(secret, ts);
            let rest = body.strip_prefix('{').unwrap_or(body);
            let sep = if rest.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            (
                url.to_string(),
                format!("{{\"timestamp\":\"{ts}\",\"sign\":\"{sign}\"{sep}{rest}"),
            )
        }
        _ => (url.to_string(), body.to_string()),
    }
}

/// Whether the robot took the message: Err is the error kept in `last_error`
/// (and shown by `GET /api/alerts`).
pub fn judge(kind: WebhookKind, status: u16, body: &str) -> Result<(), String> {
    let short: String = body.trim().chars().take(200).collect();
    if !(200..300).contains(&status) {
        return Err(if short.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {short}")
        });
    }
    let vendor = match kind {
        WebhookKind::Json | WebhookKind::Slack => return Ok(()),
        WebhookKind::Dingtalk => "DingTalk",
        WebhookKind::Wecom => "WeCom",
        WebhookKind::Feishu => "Feishu",
    };
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Err(format!(
            "{vendor} answered HTTP {status} without its JSON result: {short:?}"
        ));
    };
    let (code, message) = match kind {
        WebhookKind::Feishu => (
            v.get("code").or_else(|| v.get("StatusCode")),
            v.get("msg").or_else(|| v.get("StatusMessage")),
        ),
        _ => (v.get("errcode"), v.get("errmsg")),
    };
    match code.and_then(Value::as_i64) {
        Some(0) => Ok(()),
        Some(code) => Err(format!(
            "{vendor} error {code}: {}",
            message.and_then(Value::as_str).unwrap_or("(no message)")
        )),
        None => Err(format!(
            "{vendor} answered HTTP {status} without an error code: {short:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed with the vendors' own sample code (Python
    // hmac/hashlib/base64/urllib.parse.quote_plus, exactly as in their docs).
    #[test]
    fn signatures_match_the_vendors_sample_code() {
        assert_eq!(
            url_encode(&dingtalk_sign("SECtest", 1_700_000_000_000)),
            "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g%3D"
        );
        assert_eq!(
            feishu_sign("SECtest", 1_700_000_000),
            "G7XpBpG8NgG02fJOAhX6FRAObIljmFoxVReo8I62pEk="
        );
    }

    #[test]
    fn signing_puts_the_signature_where_each_vendor_reads_it() {
        let (url, body) = signed(
            WebhookKind::Dingtalk,
            "http://h/robot/send?access_token=x",
            "{}",
            Some("SECtest"),
            1_700_000_000_000,
        );
        assert_eq!(
            url,
            "http://h/robot/send?access_token=x&timestamp=1700000000000&sign=aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g%3D"
        );
        assert_eq!(body, "{}");
        let (_, body) = signed(
            WebhookKind::Feishu,
            "http://h/hook",
            "{\"msg_type\":\"text\"}",
            Some("SECtest"),
            1_700_000_000_999,
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["timestamp"], "1700000000");
        assert_eq!(v["sign"], "G7XpBpG8NgG02fJOAhX6FRAObIljmFoxVReo8I62pEk=");
        assert_eq!(v["msg_type"], "text");
    }

    #[test]
    fn robots_refuse_in_their_own_way() {
        assert!(judge(WebhookKind::Dingtalk, 200, r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        let e = judge(
            WebhookKind::Dingtalk,
            200,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#,
        )
        .unwrap_err();
        assert_eq!(e, "DingTalk error 310000: sign not match");
        assert!(
            judge(
                WebhookKind::Feishu,
                200,
                r#"{"StatusCode":0,"msg":"success"}"#
            )
            .is_ok()
        );
        assert!(
            judge(
                WebhookKind::Feishu,
                200,
                r#"{"code":19021,"msg":"sign match fail"}"#
            )
            .is_err()
        );
        assert!(judge(WebhookKind::Wecom, 200, "<html>").is_err());
        assert!(judge(WebhookKind::Slack, 200, "ok").is_ok());
        assert_eq!(
            judge(WebhookKind::Slack, 404, "no_service").unwrap_err(),
            "HTTP 404: no_service"
        );
    }

    #[test]
    fn mentions_follow_each_vendor() {
        let m = Message {
            title: "🔴 北区 营收 未达标".into(),
            markdown: "#### 🔴 北区 · 营收\n- **¥200** [看板](http://x/)".into(),
        };
        let mention = vec!["13800000000".to_string()];
        let d: Value = serde_json::from_str(&body(WebhookKind::Dingtalk, &m, &mention)).unwrap();
        assert_eq!(d["at"]["atMobiles"][0], "13800000000");
        assert!(
            d["markdown"]["text"]
                .as_str()
                .unwrap()
                .ends_with("@13800000000")
        );
        let w: Value = serde_json::from_str(&body(WebhookKind::Wecom, &m, &mention)).unwrap();
        assert_eq!(w["msgtype"], "text");
        assert_eq!(w["text"]["mentioned_mobile_list"][0], "13800000000");
        let w: Value =
            serde_json::from_str(&body(WebhookKind::Wecom, &m, &["zhangsan".into()])).unwrap();
        assert_eq!(w["msgtype"], "markdown");
        assert!(
            w["markdown"]["content"]
                .as_str()
                .unwrap()
                .ends_with("<@zhangsan>")
        );
        let s: Value = serde_json::from_str(&body(WebhookKind::Slack, &m, &[])).unwrap();
        assert_eq!(
            s["blocks"][0]["text"]["text"],
            "*🔴 北区 · 营收*\n- *¥200* <http://x/|看板>"
        );
    }
}
