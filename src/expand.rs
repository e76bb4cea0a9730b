//! Feeds (RSS 2.0, RSS 1.0, Atom), sitemaps (`urlset`, sitemap indexes, `.xml.gz`) and
//! robots.txt `Sitemap:` lines, expanded into the documents they list before a run: each item
//! becomes an input of its own, titled from the feed. `--since` keeps what is newer than a date
//! (or than the last run of the same report), `--limit` the first N of each.
//!
//! An input is expanded when it is given as an argument (a URL or a file) and is one of these
//! by its content; `--from-feed` makes every argument one. The entries go to a JSONL file that
//! the ordinary input pass reads, so memory holds none of them.

use std::path::{Path, PathBuf};

use url::Url;

/// What an XML document lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Feed,
    Sitemap,
    SitemapIndex,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Feed => "feed",
            Kind::Sitemap => "sitemap",
            Kind::SitemapIndex => "sitemap index",
        }
    }
}

/// One listed document (or, in a sitemap index, one child sitemap).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub url: String,
    pub title: Option<String>,
    /// Publication or last-modified time, seconds since the epoch.
    pub date: Option<i64>,
}

/// Gunzips a `.xml.gz` body (by its magic bytes), at most `max` bytes out.
pub fn gunzip(bytes: &[u8], max: u64) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes.to_vec());
    }
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not valid gzip ({e})"))?;
    if out.len() as u64 > max {
        return Err(format!("more than {max} bytes once unpacked"));
    }
    Ok(out)
}

/// The kind of document by its root element, without parsing the whole of it.
pub fn sniff(bytes: &[u8]) -> Option<Kind> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).to_ascii_lowercase();
    let body = head.trim_start_matches('\u{feff}').trim_start();
    if !body.starts_with('<') {
        return None;
    }
    // The first element that is not a declaration, comment or processing instruction.
    let mut rest = body;
    loop {
        let start = rest.find('<')?;
        rest = &rest[start..];
        if rest.starts_with("<?") || rest.starts_with("<!") {
            rest = &rest[rest.find('>')? + 1..];
            continue;
        }
        let name: String = rest[1..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
            .collect();
        let local = name.rsplit(':').next().unwrap_or(&name);
        return match local {
            "rss" | "feed" | "rdf" => Some(Kind::Feed),
            "urlset" => Some(Kind::Sitemap),
            "sitemapindex" => Some(Kind::SitemapIndex),
            _ => None,
        };
    }
}

/// Parses a feed or sitemap; relative links resolve against `base`.
pub fn parse(bytes: &[u8], base: Option<&Url>) -> Result<(Kind, Vec<Entry>), String> {
    let kind = sniff(bytes).ok_or("neither a feed (RSS, Atom) nor a sitemap")?;
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start_matches('\u{feff}');
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| format!("not well-formed XML ({e})"))?;
    let root = doc.root_element();
    let child_text = |node: roxmltree::Node, names: &[&str]| -> Option<String> {
        node.children()
            .filter(|c| c.is_element() && names.contains(&c.tag_name().name()))
            .find_map(|c| {
                let t: String = c
                    .descendants()
                    .filter(|d| d.is_text())
                    .filter_map(|d| d.text())
                    .collect();
                let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
                (!t.is_empty()).then_some(t)
            })
    };
    let resolve = |link: &str| -> Option<String> {
        let link = link.trim();
        if link.is_empty() {
            return None;
        }
        let url = match base {
            Some(b) => b.join(link).ok()?,
            None => Url::parse(link).ok()?,
        };
        matches!(url.scheme(), "http" | "https").then(|| url.to_string())
    };
    let mut entries = Vec::new();
    match kind {
        Kind::Sitemap | Kind::SitemapIndex => {
            let item = if kind == Kind::Sitemap {
                "url"
            } else {
                "sitemap"
            };
            for node in root
                .children()
                .filter(|c| c.is_element() && c.tag_name().name() == item)
            {
                if let Some(url) = child_text(node, &["loc"]).and_then(|l| resolve(&l)) {
                    entries.push(Entry {
                        url,
                        title: None,
                        date: child_text(node, &["lastmod"]).and_then(|d| parse_date(&d)),
                    });
                }
            }
        }
        Kind::Feed => {
            // RSS 2.0 items live in <channel>, RSS 1.0 items beside it, Atom entries in <feed>.
            for node in root
                .descendants()
                .filter(|n| n.is_element() && matches!(n.tag_name().name(), "item" | "entry"))
            {
                let atom_link = node
                    .children()
                    .filter(|c| c.is_element() && c.tag_name().name() == "link")
                    .filter(|c| c.attribute("href").is_some())
                    .min_by_key(|c| match c.attribute("rel") {
                        None | Some("alternate") => 0,
                        _ => 1,
                    })
                    .filter(|c| matches!(c.attribute("rel"), None | Some("alternate")))
                    .and_then(|c| c.attribute("href"))
                    .map(str::to_string);
                let link = atom_link
                    .or_else(|| child_text(node, &["link"]))
                    .or_else(|| {
                        node.children()
                            .find(|c| c.is_element() && c.tag_name().name() == "guid")
                            .filter(|g| g.attribute("isPermaLink") != Some("false"))
                            .and_then(|g| g.text())
                            .map(str::to_string)
                    })
                    .or_else(|| {
                        // RSS 1.0: rdf:about names the item's link.
                        node.attributes()
                            .find(|a| a.name() == "about")
                            .map(|a| a.value().to_string())
                    });
                let Some(url) = link.and_then(|l| resolve(&l)) else {
                    continue;
                };
                entries.push(Entry {
                    url,
                    title: child_text(node, &["title"]),
                    date: child_text(node, &["pubDate", "published", "updated", "date"])
                        .and_then(|d| parse_date(&d)),
                });
            }
        }
    }
    Ok((kind, entries))
}

/// Seconds since the epoch of an RFC 3339 / W3C date (`2024-05-01`, `2024-05-01T10:00Z`,
/// `2024-05-01T10:00:00.5+02:00`) or an RFC 2822 date (`Tue, 10 Jun 2003 04:00:00 GMT`).
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.as_bytes().first().is_some_and(u8::is_ascii_digit) && s.get(4..5) == Some("-") {
        rfc3339(s)
    } else {
        rfc2822(s)
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn valid(y: i64, m: i64, d: i64, h: i64, min: i64, sec: i64) -> bool {
    (1..=12).contains(&m)
        && (1..=31).contains(&d)
        && (0..=23).contains(&h)
        && (0..=59).contains(&min)
        && (0..=60).contains(&sec)
        && y > 0
}

fn rfc3339(s: &str) -> Option<i64> {
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (mut h, mut min, mut sec, mut offset) = (0, 0, 0, 0);
    if s.len() > 10 {
        let rest = &s[10..];
        let rest = rest.strip_prefix(['T', 't', ' '])?;
        h = rest.get(0..2)?.parse().ok()?;
        min = rest.get(3..5)?.parse().ok()?;
        let mut tail = &rest[5..];
        if let Some(t) = tail.strip_prefix(':') {
            sec = t.get(0..2)?.parse().ok()?;
            tail = &t[2..];
            if let Some(t) = tail.strip_prefix('.') {
                tail = t.trim_start_matches(|c: char| c.is_ascii_digit());
            }
        }
        offset = match tail {
            "" | "Z" | "z" => 0,
            t if t.starts_with(['+', '-']) => {
                let sign = if t.starts_with('-') { -1 } else { 1 };
                let oh: i64 = t.get(1..3)?.parse().ok()?;
                let om: i64 = t.get(4..6).or(t.get(3..5)).unwrap_or("0").parse().ok()?;
                sign * (oh * 3600 + om * 60)
            }
            _ => return None,
        };
    }
    valid(y, m, d, h, min, sec)
        .then(|| days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 + sec - offset)
}

fn rfc2822(s: &str) -> Option<i64> {
    // "[Day,] DD Mon YYYY HH:MM[:SS] ZONE"
    let s = s.split_once(',').map_or(s, |(_, rest)| rest);
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() < 4 {
        return None;
    }
    let d: i64 = parts[0].parse().ok()?;
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let mon = parts[1].get(..3)?.to_ascii_lowercase();
    let m = MONTHS.iter().position(|x| *x == mon)? as i64 + 1;
    let mut y: i64 = parts[2].parse().ok()?;
    if y < 100 {
        y += if y < 50 { 2000 } else { 1900 };
    }
    let hms: Vec<i64> = parts[3]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (h, min, sec) = (
        *hms.first()?,
        *hms.get(1)?,
        hms.get(2).copied().unwrap_or(0),
    );
    let zone = parts.get(4).copied().unwrap_or("GMT");
    let offset = match zone.to_ascii_uppercase().as_str() {
        "GMT" | "UT" | "UTC" | "Z" => 0,
        "EST" => -5 * 3600,
        "EDT" => -4 * 3600,
        "CST" => -6 * 3600,
        "CDT" => -5 * 3600,
        "MST" => -7 * 3600,
        "MDT" => -6 * 3600,
        "PST" => -8 * 3600,
        "PDT" => -7 * 3600,
        z if z.len() == 5 && z.starts_with(['+', '-']) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let oh: i64 = z[1..3].parse().ok()?;
            let om: i64 = z[3..5].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
        _ => 0,
    };
    valid(y, m, d, h, min, sec)
        .then(|| days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 + sec - offset)
}

/// `--since`: a date, or the start of the last run that wrote the same report.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    Date(i64),
    LastRun,
}

impl Since {
    pub fn parse(s: &str) -> Result<Since, String> {
        if s.eq_ignore_ascii_case("last") {
            return Ok(Since::LastRun);
        }
        parse_date(s).map(Since::Date).ok_or_else(|| {
            format!("invalid --since '{s}': use a date such as 2026-11-30 or 2026-11-30T08:00:00Z, or `last`")
        })
    }
}

/// Where `--since last` keeps the start of the last finished run: beside the report.
pub fn since_file(report: &Path) -> PathBuf {
    let mut name = report.file_name().unwrap_or_default().to_os_string();
    name.push(".since");
    report.with_file_name(name)
}

/// The start time of the last run recorded beside `report`, if any.
pub fn last_run(report: &Path) -> Option<i64> {
    std::fs::read_to_string(since_file(report))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Keeps the entries newer than `since` (undated ones are kept: nothing says they are old),
/// then the first `limit`. Returns the entries and how many undated ones were kept.
pub fn select(
    entries: Vec<Entry>,
    since: Option<i64>,
    limit: Option<usize>,
) -> (Vec<Entry>, usize) {
    let mut undated = 0;
    let kept: Vec<Entry> = entries
        .into_iter()
        .filter(|e| match (since, e.date) {
            (None, _) => true,
            (Some(t), Some(d)) => d > t,
            (Some(_), None) => {
                undated += 1;
                true
            }
        })
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    (kept, undated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_the_formats_feeds_and_sitemaps_use() {
        let t = 1_700_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(parse_date("2023-11-14T22:13:20Z"), Some(t));
        assert_eq!(parse_date("2023-11-14T23:13:20+01:00"), Some(t));
        assert_eq!(parse_date("2023-11-14T22:13:20.123Z"), Some(t));
        assert_eq!(parse_date("2023-11-14T22:13Z"), Some(t - 20));
        assert_eq!(parse_date("2023-11-14"), Some(t - 80_000));
        assert_eq!(parse_date("Tue, 14 Nov 2023 22:13:20 GMT"), Some(t));
        assert_eq!(parse_date("Tue, 14 Nov 2023 17:13:20 -0500"), Some(t));
        assert_eq!(parse_date("14 Nov 2023 14:13:20 PST"), Some(t));
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_date("2023-13-01"), None);
    }

    #[test]
    fn rss_atom_rdf_and_sitemaps() {
        let base = Url::parse("https://site.example/blog/").unwrap();
        let rss = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
            <item><title>First &amp; best</title><link>https://site.example/a</link><pubDate>Tue, 14 Nov 2023 22:13:20 GMT</pubDate></item>
            <item><title>Relative</title><link>b.html</link></item>
            <item><title>Guid only</title><guid>https://site.example/c</guid></item>
            <item><title>No link</title></item></channel></rss>"#;
        let (kind, e) = parse(rss.as_bytes(), Some(&base)).unwrap();
        assert_eq!(kind, Kind::Feed);
        let urls: Vec<&str> = e.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://site.example/a",
                "https://site.example/blog/b.html",
                "https://site.example/c"
            ]
        );
        assert_eq!(e[0].title.as_deref(), Some("First & best"));
        assert_eq!(e[0].date, Some(1_700_000_000));
        let atom = r#"<feed xmlns="http://www.w3.org/2005/Atom"><entry><title type="html">A</title>
            <link rel="edit" href="/edit/1"/><link rel="alternate" href="/posts/1"/><updated>2023-11-14T22:13:20Z</updated></entry></feed>"#;
        let (kind, e) = parse(atom.as_bytes(), Some(&base)).unwrap();
        assert_eq!(kind, Kind::Feed);
        assert_eq!(e[0].url, "https://site.example/posts/1");
        let rdf = r#"<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
            <channel rdf:about="https://site.example/"><title>C</title></channel>
            <item rdf:about="https://site.example/r1"><title>R1</title><link>https://site.example/r1</link><dc:date>2023-11-14</dc:date></item></rdf:RDF>"#;
        let (_, e) = parse(rdf.as_bytes(), None).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].date, Some(1_700_000_000 - 80_000));
        let sitemap = r#"<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc> https://site.example/p1 </loc><lastmod>2023-11-14</lastmod></url><url><loc>ftp://x/y</loc></url></urlset>"#;
        let (kind, e) = parse(sitemap.as_bytes(), None).unwrap();
        assert_eq!(kind, Kind::Sitemap);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].url, "https://site.example/p1");
        let index = r#"<?xml version="1.0" encoding="UTF-8"?><!-- c --><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>https://site.example/s1.xml.gz</loc></sitemap></sitemapindex>"#;
        assert_eq!(parse(index.as_bytes(), None).unwrap().0, Kind::SitemapIndex);
        assert_eq!(sniff(b"<!doctype html><html></html>"), None);
        assert!(parse(b"<rss><channel><item>", None).is_err());
    }

    #[test]
    fn since_keeps_newer_and_undated_then_limits() {
        let e = |d: Option<i64>| Entry {
            url: "https://x/".into(),
            title: None,
            date: d,
        };
        let (kept, undated) = select(
            vec![e(Some(10)), e(Some(5)), e(None), e(Some(20))],
            Some(9),
            None,
        );
        assert_eq!(kept.len(), 3);
        assert_eq!(undated, 1);
        let (kept, _) = select(vec![e(Some(10)), e(Some(5)), e(None)], None, Some(2));
        assert_eq!(kept.len(), 2);
        assert_eq!(Since::parse("last"), Ok(Since::LastRun));
        assert!(Since::parse("soon").is_err());
    }
}

/// An argument that named a feed, sitemap or robots.txt, and what it lists.
pub struct Listing {
    /// The entries, one JSON object a line (`Spooled`), in a file removed with the listing.
    pub spool: PathBuf,
    /// Child sitemaps that could not be read, as error records after the entries.
    pub errors: Vec<crate::input::Source>,
}

impl Drop for Listing {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.spool);
    }
}

/// One entry as spooled.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Spooled {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// What `expand_args` decided for the arguments it expanded.
pub enum Expanded {
    Listing(Listing),
    /// It should have been a listing and is not (with `--from-feed`), or cannot be read.
    Invalid(crate::input::Source),
}

/// `--from-feed`, `--since`, `--limit` and what fetching needs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub from_feed: bool,
    pub since: Option<i64>,
    pub limit: Option<usize>,
    pub max_bytes: u64,
    pub quiet: bool,
}

/// Sitemap indexes are followed this deep.
const MAX_DEPTH: usize = 3;
/// Child sitemaps read for one argument at most.
const MAX_CHILDREN: usize = 1000;

/// Whether a URL's name says it may be a feed, sitemap or robots.txt (it is fetched to see).
fn listing_name(url: &Url) -> bool {
    let path = url.path().to_ascii_lowercase();
    path == "/robots.txt"
        || [".xml", ".xml.gz", ".rss", ".atom", ".rdf"]
            .iter()
            .any(|e| path.ends_with(e))
        || path
            .split('/')
            .any(|seg| matches!(seg, "feed" | "feeds" | "rss" | "atom"))
}

fn listing_file(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    [".xml", ".xml.gz", ".rss", ".atom", ".rdf"]
        .iter()
        .any(|e| name.ends_with(e))
}

fn invalid(shown: &str, e: &crate::error::DocError) -> crate::input::Source {
    crate::input::Source::invalid(shown, e.class, e.message.clone())
}

/// Expands the arguments that are feeds, sitemaps or robots.txt, by their content; the others
/// are not in the map and stay as they are.
pub async fn expand_args(
    args: &[String],
    fetcher: &crate::fetch::Fetcher,
    opts: &Options,
) -> std::collections::HashMap<String, Expanded> {
    let mut out = std::collections::HashMap::new();
    for arg in args {
        if let Some(done) = expand_one(arg, fetcher, opts).await {
            out.insert(arg.clone(), done);
        }
    }
    out
}

async fn expand_one(
    arg: &str,
    fetcher: &crate::fetch::Fetcher,
    opts: &Options,
) -> Option<Expanded> {
    use crate::error::{DocError, ErrorClass};
    let say = |line: String| {
        if !opts.quiet {
            eprintln!("summarize: {line}");
        }
    };
    let not_listing = |why: String| {
        Expanded::Invalid(crate::input::Source::invalid(
            arg,
            ErrorClass::UnsupportedContent,
            format!("{arg}: {why}; --from-feed takes RSS and Atom feeds, sitemaps and robots.txt"),
        ))
    };
    let mut errors = Vec::new();
    let entries = if let Some(url) = crate::input::parse_http_url(arg) {
        if !(opts.from_feed || listing_name(&url)) {
            return None;
        }
        if url.path() == "/robots.txt" {
            let body = match fetcher.get_any(&url, true).await {
                Ok(f) => f.body,
                Err(e) => return Some(Expanded::Invalid(invalid(arg, &e))),
            };
            let rules =
                crate::robots::Rules::parse(&String::from_utf8_lossy(&body), crate::robots::AGENT);
            let sitemaps: Vec<Entry> = rules
                .sitemaps
                .iter()
                .filter_map(|s| url.join(s).ok())
                .map(|u| Entry {
                    url: u.to_string(),
                    title: None,
                    date: None,
                })
                .collect();
            if sitemaps.is_empty() {
                return Some(not_listing(
                    "this robots.txt names no sitemap (no `Sitemap:` line)".into(),
                ));
            }
            say(format!("{arg}: {} sitemaps", sitemaps.len()));
            children(fetcher, sitemaps, 1, opts, &mut errors).await
        } else {
            let fetched = match fetcher.get_any(&url, false).await {
                Ok(f) => f,
                Err(e) if opts.from_feed => return Some(Expanded::Invalid(invalid(arg, &e))),
                Err(_) => return None, // the run fetches it again and reports what is wrong
            };
            match listed(
                arg,
                &fetched.body,
                Some(&fetched.final_url),
                fetcher,
                opts,
                &mut errors,
            )
            .await
            {
                Ok(list) => list,
                Err(None) => return None,
                Err(Some(why)) => return Some(not_listing(why)),
            }
        }
    } else {
        let path = Path::new(arg);
        if !(path.is_file() && (opts.from_feed || listing_file(path))) {
            return None;
        }
        let read = std::fs::File::open(path).and_then(|f| {
            use std::io::Read;
            let mut b = Vec::new();
            f.take(opts.max_bytes + 1).read_to_end(&mut b).map(|_| b)
        });
        let body = match read {
            Ok(b) if b.len() as u64 <= opts.max_bytes => b,
            Ok(_) => {
                let e = DocError::new(
                    ErrorClass::TooLarge,
                    format!(
                        "{arg}: file is larger than {} bytes; raise --max-bytes to accept it",
                        opts.max_bytes
                    ),
                );
                return Some(Expanded::Invalid(invalid(arg, &e)));
            }
            Err(e) => {
                let e = DocError::new(ErrorClass::Io, format!("{arg}: cannot read the file: {e}"));
                return Some(Expanded::Invalid(invalid(arg, &e)));
            }
        };
        match listed(arg, &body, None, fetcher, opts, &mut errors).await {
            Ok(list) => list,
            Err(None) => return None,
            Err(Some(why)) => return Some(not_listing(why)),
        }
    };
    let listed = entries.len();
    let (kept, undated) = select(entries, opts.since, opts.limit);
    if opts.since.is_some() || opts.limit.is_some() {
        say(format!(
            "{arg}: {} of {listed} entries kept{}",
            kept.len(),
            if undated > 0 {
                format!(" ({undated} without a date, kept)")
            } else {
                String::new()
            }
        ));
    }
    match spool(&kept) {
        Ok(spool) => Some(Expanded::Listing(Listing { spool, errors })),
        Err(e) => {
            let e = DocError::new(
                ErrorClass::Io,
                format!("{arg}: cannot write its entries to a temporary file: {e}"),
            );
            Some(Expanded::Invalid(invalid(arg, &e)))
        }
    }
}

/// The entries of a feed or sitemap body (gzipped or not; a sitemap index's children read).
/// `Err(None)`: not a listing, leave the argument as it is; `Err(Some(why))`: it should
/// have been one (by its content, or `--from-feed`) and is not readable.
async fn listed(
    arg: &str,
    body: &[u8],
    base: Option<&Url>,
    fetcher: &crate::fetch::Fetcher,
    opts: &Options,
    errors: &mut Vec<crate::input::Source>,
) -> Result<Vec<Entry>, Option<String>> {
    let body = gunzip(body, opts.max_bytes).map_err(Some)?;
    let say = |line: String| {
        if !opts.quiet {
            eprintln!("summarize: {line}");
        }
    };
    match parse(&body, base) {
        Ok((Kind::SitemapIndex, list)) => {
            say(format!("{arg}: a sitemap index of {} sitemaps", list.len()));
            Ok(children(fetcher, list, 1, opts, errors).await)
        }
        Ok((kind, list)) => {
            say(format!(
                "{arg}: a {} of {} entries",
                kind.name(),
                list.len()
            ));
            Ok(list)
        }
        Err(e) if opts.from_feed || sniff(&body).is_some() => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// The entries of child sitemaps (a sitemap index, robots.txt's `Sitemap:` lines), in order;
/// a child that cannot be read is an error record; older than `--since` is skipped unread.
fn children<'a>(
    fetcher: &'a crate::fetch::Fetcher,
    list: Vec<Entry>,
    depth: usize,
    opts: &'a Options,
    errors: &'a mut Vec<crate::input::Source>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Entry>> + Send + 'a>> {
    Box::pin(async move {
        let mut out = Vec::new();
        for child in list.into_iter().take(MAX_CHILDREN) {
            if let (Some(since), Some(date)) = (opts.since, child.date) {
                if date <= since {
                    continue;
                }
            }
            let Ok(url) = Url::parse(&child.url) else {
                continue;
            };
            let body = match fetcher.get_any(&url, false).await {
                Ok(f) => gunzip(&f.body, opts.max_bytes).map_err(|e| {
                    crate::error::DocError::new(
                        crate::error::ErrorClass::UnsupportedContent,
                        format!("{url}: {e}"),
                    )
                }),
                Err(e) => Err(e),
            };
            let parsed = body.and_then(|b| {
                parse(&b, Some(&url)).map_err(|e| {
                    crate::error::DocError::new(
                        crate::error::ErrorClass::UnsupportedContent,
                        format!("{url}: a sitemap that is {e}"),
                    )
                })
            });
            match parsed {
                Ok((Kind::SitemapIndex, grand)) if depth < MAX_DEPTH => {
                    out.extend(children(fetcher, grand, depth + 1, opts, errors).await)
                }
                Ok((Kind::SitemapIndex, _)) => errors.push(crate::input::Source::invalid(
                    url.as_str(),
                    crate::error::ErrorClass::InvalidInput,
                    format!("{url}: sitemap indexes nested deeper than {MAX_DEPTH} levels are not followed"),
                )),
                Ok((_, entries)) => out.extend(entries),
                Err(e) => errors.push(invalid(url.as_str(), &e)),
            }
        }
        out
    })
}

fn spool(entries: &[Entry]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "summarize-listing-{}-{n}.jsonl",
        std::process::id()
    ));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for e in entries {
        serde_json::to_writer(
            &mut w,
            &Spooled {
                url: e.url.clone(),
                title: e.title.clone(),
            },
        )?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(path)
}
