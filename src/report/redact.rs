//! `--redact`: the same report with nothing in it that names the customer's machines,
//! applications or users, so it can be attached to a vendor ticket.
//!
//! Redaction is a transformation of the [`Report`], not a printer option: every printer,
//! present and future, prints the redacted data and cannot leak what it never sees.
//!
//! * Host addresses and host names become `host-N`, appNames `app-N`, replica set names
//!   `set-N`, process names `process-N`. The numbers come from a map built for this one
//!   report (servers first, then clients, each in address order), never from a hash: a
//!   hash of an IPv4 address is reversed by trying all 2^32 of them.
//! * Ports are kept: 27017 versus an ephemeral port is part of the evidence.
//! * Document values the verdicts do not need are dropped: platform and OS strings,
//!   `saslSupportedMechs` (it is `db.user`), process command lines and containers, the
//!   capture path and the command line's arguments. What stays is what a vendor needs to
//!   check the formula: driver name and version, FaaS environment name, compressors,
//!   authentication mechanism, command names and every count and timing.
//! * Connection endpoints are typed addresses in the observations; they are replaced by
//!   addresses from the IPv6 documentation prefix (2001:db8::/32), and the printers show
//!   those through [`Report::endpoint`] as `host-N:port`. A printer that forgot to ask
//!   would print a documentation address, not a customer's.
//! * Free text (evidence, verdicts, deviations, warnings) is rewritten: every token that
//!   parses as an IP address, and every known host, app or set name as a whole word.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::Report;

/// Placeholder for values that are withheld rather than renamed.
pub const WITHHELD: &str = "[redacted]";

/// The per-report pseudonym map. Never printed: it is the key to the redaction.
#[derive(Default)]
struct Pseudonyms {
    /// Canonical host text (an IP's display form, or a lower-cased name) → `host-N`.
    hosts: HashMap<String, String>,
    apps: HashMap<String, String>,
    sets: HashMap<String, String>,
    processes: HashMap<String, String>,
    /// Names (not addresses) to look for in free text, with their pseudonyms.
    words: Vec<(String, String)>,
}

fn next_name(map: &mut HashMap<String, String>, prefix: &str, key: String) -> String {
    let n = map.len() + 1;
    map.entry(key)
        .or_insert_with(|| format!("{prefix}-{n}"))
        .clone()
}

impl Pseudonyms {
    fn host_key(host: &str) -> String {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => bare.to_ascii_lowercase(),
        }
    }

    fn host(&mut self, host: &str) -> String {
        next_name(&mut self.hosts, "host", Self::host_key(host))
    }

    fn ip(&mut self, ip: IpAddr) -> String {
        next_name(&mut self.hosts, "host", ip.to_string())
    }

    fn app(&mut self, app: &str) -> String {
        next_name(&mut self.apps, "app", app.to_string())
    }

    fn set(&mut self, set: &str) -> String {
        next_name(&mut self.sets, "set", set.to_string())
    }

    fn process(&mut self, name: &str) -> String {
        next_name(&mut self.processes, "process", name.to_string())
    }

    /// "host:port", "[v6]:port", "host" or "ip" → the same with the host renamed.
    fn address(&mut self, text: &str) -> String {
        if let Ok(sa) = text.parse::<SocketAddr>() {
            return format!("{}:{}", self.ip(sa.ip()), sa.port());
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return self.ip(ip);
        }
        match text.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => {
                format!("{}:{port}", self.host(host))
            }
            _ => self.host(text),
        }
    }

    /// `host|appName|driver` client ids, rebuilt from their parts (driver names such as
    /// "PyMongo|c" contain the separator, so the driver is the remainder).
    fn client_id(&mut self, id: &str) -> String {
        let mut parts = id.splitn(3, '|');
        let host = parts.next().unwrap_or("");
        let app = parts.next().unwrap_or("");
        let driver = parts.next().unwrap_or("");
        let host = if host.is_empty() {
            String::new()
        } else {
            self.host(host)
        };
        let app = if app.is_empty() {
            String::new()
        } else {
            self.app(app)
        };
        format!("{host}|{app}|{driver}")
    }

    /// Free text with every IP address token and every known name replaced.
    fn text(&mut self, text: &str) -> String {
        let text = self.replace_ip_tokens(text);
        replace_words(&text, &self.words)
    }

    fn replace_ip_tokens(&mut self, text: &str) -> String {
        let is_run = |c: char| c.is_ascii_hexdigit() || c == '.' || c == ':';
        let word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut prev: Option<char> = None;
        while let Some(start) = rest.find(is_run) {
            let (before, from) = rest.split_at(start);
            out.push_str(before);
            prev = before.chars().next_back().or(prev);
            let len = from.find(|c: char| !is_run(c)).unwrap_or(from.len());
            let (run, after) = from.split_at(len);
            let next = after.chars().next();
            let standalone = !prev.is_some_and(word_char) && !next.is_some_and(word_char);
            match standalone.then(|| split_ip(run)).flatten() {
                Some((ip, tail)) => {
                    out.push_str(&self.ip(ip));
                    out.push_str(tail);
                }
                None => out.push_str(run),
            }
            prev = run.chars().next_back();
            rest = after;
        }
        out.push_str(rest);
        out
    }

    /// After every name is known: the word list for free text, longest first so that a
    /// name containing another is replaced whole.
    fn freeze_words(&mut self) {
        let mut words: Vec<(String, String)> = self
            .hosts
            .iter()
            .filter(|(k, _)| k.parse::<IpAddr>().is_err())
            .chain(self.apps.iter())
            .chain(self.sets.iter())
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        words.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        self.words = words;
    }
}

/// An IP address at the start of `run`, with what follows it (a port, a full stop).
fn split_ip(run: &str) -> Option<(IpAddr, &str)> {
    if let Ok(ip) = run.parse::<IpAddr>() {
        return Some((ip, ""));
    }
    // "10.0.0.5:51234", "10.0.0.5." at the end of a sentence, "10.0.0.5:51234."
    let trimmed = run.trim_end_matches('.');
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Some((ip, &run[trimmed.len()..]));
    }
    if let Some((host, _)) = trimmed.rsplit_once(':') {
        if host.contains('.') && !host.contains(':') {
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Some((ip, &run[host.len()..]));
            }
        }
    }
    None
}

/// Replace whole-word occurrences of each name. A word boundary is anything but a
/// letter, digit, `_` or `-`, or a `.` that continues a dotted name.
fn replace_words(text: &str, words: &[(String, String)]) -> String {
    let mut text = text.to_string();
    for (word, pseudonym) in words {
        let mut out = String::with_capacity(text.len());
        let mut consumed = 0;
        while let Some(at) = find_word(&text, consumed, word) {
            out.push_str(&text[consumed..at]);
            out.push_str(pseudonym);
            consumed = at + word.len();
        }
        if consumed > 0 {
            out.push_str(&text[consumed..]);
            text = out;
        }
    }
    text
}

fn find_word(text: &str, from: usize, word: &str) -> Option<usize> {
    let inner = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let lower = text.to_ascii_lowercase();
    let word_lower = word.to_ascii_lowercase();
    let mut start = from;
    while let Some(i) = lower[start..].find(&word_lower) {
        let at = start + i;
        let end = at + word.len();
        let before = text[..at].chars().next_back();
        let mut after = text[end..].chars();
        let next = after.next();
        let dotted_on = next == Some('.') && after.next().is_some_and(|c| c.is_alphanumeric());
        if !before.is_some_and(|c| inner(c) || c == '.') && !next.is_some_and(inner) && !dotted_on {
            return Some(at);
        }
        start = at + word.len().max(1);
    }
    None
}

/// Documentation address (RFC 3849) standing in for the n-th pseudonymous host.
fn stand_in(n: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0,
        0,
        0,
        0,
        (n >> 16) as u16,
        n as u16,
    ))
}

/// Command-line arguments without their values, except numbers and format names: those
/// say how the report was made and name nothing.
fn redact_command_line(line: &str) -> String {
    let value = |v: &str| -> String {
        let safe =
            v.parse::<f64>().is_ok() || ["text", "json", "markdown", "html", "any"].contains(&v);
        if safe {
            v.to_string()
        } else {
            WITHHELD.to_string()
        }
    };
    let mut words = line.split(' ');
    let mut out = vec![words
        .next()
        .map_or("conn-attrib", |w| {
            w.rsplit('/').next().unwrap_or("conn-attrib")
        })
        .to_string()];
    for w in words {
        out.push(match w.split_once('=') {
            Some((flag, v)) if flag.starts_with('-') => format!("{flag}={}", value(v)),
            _ if w.starts_with('-') && w.len() > 1 => w.to_string(),
            _ => value(w),
        });
    }
    out.join(" ")
}

/// A pseudonym map that outlives one report. Live mode redacts each refresh, the
/// Prometheus labels and the final report with the same one, so `host-2` names the same
/// machine on the screen, in every scrape and in the report; a fresh map per refresh
/// would renumber hosts whenever one appeared or was released. Never printed.
#[derive(Default)]
pub struct Redactor {
    names: Pseudonyms,
}

impl Redactor {
    /// "host:port", "host" or "ip" with the host renamed, as reports show nodes.
    pub fn address(&mut self, text: &str) -> String {
        self.names.address(text)
    }
    /// A host address or name → `host-N`.
    pub fn host(&mut self, host: &str) -> String {
        self.names.host(host)
    }
    /// An appName → `app-N`.
    pub fn app(&mut self, app: &str) -> String {
        self.names.app(app)
    }
}

impl Report {
    /// This report with every host, name and document value replaced or dropped.
    pub fn redacted(self) -> Report {
        self.redacted_with(&mut Redactor::default())
    }

    /// [`Report::redacted`] with pseudonyms kept in `redactor`: names it already knows
    /// keep their numbers, new ones are numbered after them.
    pub fn redacted_with(mut self, redactor: &mut Redactor) -> Report {
        let names = &mut redactor.names;
        // Deterministic numbering: servers, then clients, each in address order, then
        // the names servers announce.
        let servers: BTreeSet<IpAddr> = self
            .attribution
            .connections
            .iter()
            .map(|c| c.obs.server.ip())
            .collect();
        let clients: BTreeSet<IpAddr> = self
            .attribution
            .connections
            .iter()
            .map(|c| c.obs.client.ip())
            .collect();
        for ip in servers.iter().chain(&clients) {
            names.ip(*ip);
        }
        let mut announced = BTreeSet::new();
        let mut apps = BTreeSet::new();
        let mut sets = BTreeSet::new();
        for c in &self.attribution.connections {
            if let Some(s) = &c.obs.server_info {
                for h in
                    s.me.iter()
                        .chain(&s.hosts)
                        .chain(&s.passives)
                        .chain(&s.arbiters)
                {
                    announced.insert(h.clone());
                }
                sets.extend(s.set_name.clone());
            }
            if let Some(app) = c.obs.handshake.as_ref().and_then(|h| h.app_name.clone()) {
                apps.insert(app);
            }
        }
        for c in &self.attribution.clients {
            apps.extend(c.app_name.clone());
            for h in c.nodes.iter().chain(&c.nodes_not_reached) {
                announced.insert(h.clone());
            }
        }
        let cluster = &self.cluster;
        for m in &cluster.membership {
            announced.extend(m.members.iter().chain(&m.removed).cloned());
            sets.extend(m.set_name.clone());
        }
        for d in &cluster.drop_connections_seen {
            announced.extend(d.targets.iter().flatten().cloned());
            announced.extend(d.ignored.iter().cloned());
        }
        for h in &announced {
            names.address(h);
        }
        for a in &apps {
            names.app(a);
        }
        for s in &sets {
            names.set(s);
        }
        names.freeze_words();

        // Stand-in endpoints, one per pseudonymous host.
        let mut stand_ins: HashMap<IpAddr, IpAddr> = HashMap::new();
        let mut endpoint_names: HashMap<IpAddr, String> = HashMap::new();
        let mut stand_in_of = |ip: IpAddr, names: &mut Pseudonyms| -> IpAddr {
            let n = stand_ins.len() as u32 + 1;
            *stand_ins.entry(ip).or_insert_with(|| {
                let s = stand_in(n);
                endpoint_names.insert(s, names.ip(ip));
                s
            })
        };
        let mut moved: HashMap<SocketAddr, SocketAddr> = HashMap::new();
        for c in &mut self.attribution.connections {
            let obs = &mut c.obs;
            let client = SocketAddr::new(stand_in_of(obs.client.ip(), names), obs.client.port());
            moved.insert(obs.client, client);
            obs.client = client;
            obs.server = SocketAddr::new(stand_in_of(obs.server.ip(), names), obs.server.port());
            if let Some(h) = &mut obs.handshake {
                // Records share handshakes and server descriptions; a redacted report
                // gets its own copies.
                let h = std::sync::Arc::make_mut(h);
                h.app_name = h.app_name.as_deref().map(|a| names.app(a));
                h.platform = None;
                h.os_type = None;
                h.sasl_supported_mechs = None;
            }
            if let Some(s) = &mut obs.server_info {
                let s = std::sync::Arc::make_mut(s);
                s.set_name = s.set_name.as_deref().map(|n| names.set(n));
                s.me = s.me.as_deref().map(|h| names.address(h));
                for list in [&mut s.hosts, &mut s.passives, &mut s.arbiters] {
                    for h in list.iter_mut() {
                        *h = names.address(h);
                    }
                }
            }
            let cluster = &mut obs.cluster;
            cluster.heartbeat_from = cluster.heartbeat_from.as_deref().map(|h| names.address(h));
            for d in &mut cluster.drop_connections {
                for t in d.targets.iter_mut().flatten() {
                    *t = names.address(t);
                }
                d.errmsg = d.errmsg.as_deref().map(|e| names.text(e));
            }
            c.client_id = names.client_id(&c.client_id);
            c.verdict.evidence = names.text(&c.verdict.evidence);
        }
        for c in &mut self.attribution.clients {
            c.id = names.client_id(&c.id);
            c.host = names.host(&c.host);
            c.app_name = c.app_name.as_deref().map(|a| names.app(a));
            c.platform = None;
            c.nodes = c.nodes.iter().map(|n| names.address(n)).collect();
            c.nodes_not_reached = c
                .nodes_not_reached
                .iter()
                .map(|n| names.address(n))
                .collect();
            c.peak_pool_per_node = std::mem::take(&mut c.peak_pool_per_node)
                .into_iter()
                .map(|(n, p)| (names.address(&n), p))
                .collect();
            c.verdict = names.text(&c.verdict);
            for line in c.deviations.iter_mut().chain(c.advice.iter_mut()) {
                *line = names.text(line);
            }
            if let Some(p) = &mut c.projection {
                p.summary = names.text(&p.summary);
            }
        }
        for n in &mut self.nodes {
            n.node = names.address(&n.node);
            n.role = n.role.as_deref().map(|r| names.text(r));
            for change in &mut n.role_changes {
                change.from = names.text(&change.from);
                change.to = names.text(&change.to);
            }
        }
        for w in &mut self.warnings {
            w.message = names.text(&w.message);
        }
        redact_cluster(&mut self.cluster, names);
        self.input.path = WITHHELD.to_string();
        self.meta.command_line = redact_command_line(&self.meta.command_line);

        let processes = std::mem::take(&mut self.processes)
            .into_iter()
            .filter_map(|(addr, mut p)| {
                let addr = moved.get(&addr).copied()?;
                p.name = names.process(&p.name);
                p.cmdline = WITHHELD.to_string();
                p.container = None;
                Some((addr, p))
            })
            .collect();
        self.endpoint_names = endpoint_names;
        self.redacted = true;
        self.with_processes(processes)
    }
}

/// The cluster-side section: members, stale connections, the dropConnections plan and
/// the ones seen, whose commands name hosts.
fn redact_cluster(cluster: &mut crate::attribute::cluster::Cluster, names: &mut Pseudonyms) {
    let all = |list: &mut Vec<String>, names: &mut Pseudonyms| {
        for h in list.iter_mut() {
            *h = names.address(h);
        }
    };
    for m in &mut cluster.membership {
        m.set_name = m.set_name.as_deref().map(|n| names.set(n));
        all(&mut m.members, names);
        all(&mut m.removed, names);
    }
    for s in &mut cluster.stale {
        s.client = names.address(&s.client);
        s.server = names.address(&s.server);
        s.host = names.address(&s.host);
        s.member = s.member.as_deref().map(|m| names.address(m));
        s.client_id = names.client_id(&s.client_id);
    }
    for p in &mut cluster.drop_connections {
        p.member = names.address(&p.member);
        all(&mut p.hosts, names);
        p.command = names.text(&p.command);
        p.check = names.text(&p.check);
    }
    for d in &mut cluster.drop_connections_seen {
        d.sender = names.address(&d.sender);
        d.client_id = names.client_id(&d.client_id);
        d.member = names.address(&d.member);
        for t in d.targets.iter_mut().flatten() {
            *t = names.address(t);
        }
        all(&mut d.ignored, names);
        if let Some(c) = d.corrected.as_mut() {
            all(c, names);
        }
        d.corrected_command = d.corrected_command.as_deref().map(|c| names.text(c));
        for t in d.targeted.iter_mut().chain(d.missed.iter_mut()) {
            t.client = names.address(&t.client);
            t.server = names.address(&t.server);
            t.host = names.address(&t.host);
        }
        d.summary = names.text(&d.summary);
    }
    for o in cluster.origins.iter_mut().flatten() {
        *o = names.address(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_tokens_in_free_text_are_renamed_whole() {
        let mut p = Pseudonyms::default();
        let a = p.ip("10.0.0.1".parse().unwrap());
        let text = p.text("10.0.0.1:27017 -> 10.0.0.12:51234, also [::1]:27017 and 10.0.0.1.");
        assert!(!text.contains("10.0.0"), "{text}");
        assert!(!text.contains("::1"), "{text}");
        assert!(
            text.starts_with(&format!("{a}:27017 -> host-2:51234")),
            "{text}"
        );
        assert!(text.ends_with(&format!("and {a}.")), "{text}");
        // Versions and counts are not addresses.
        assert_eq!(p.text("PyMongo 4.20.1, 3 nodes"), "PyMongo 4.20.1, 3 nodes");
    }

    #[test]
    fn names_are_replaced_as_whole_words_only() {
        let words = vec![
            ("db1.example.com".to_string(), "host-1".to_string()),
            ("lab".to_string(), "app-1".to_string()),
        ];
        assert_eq!(
            replace_words("lab available on db1.example.com:27017.", &words),
            "app-1 available on host-1:27017."
        );
        assert_eq!(
            replace_words("xdb1.example.com.au", &words),
            "xdb1.example.com.au"
        );
    }

    #[test]
    fn command_line_keeps_flags_and_numbers() {
        assert_eq!(
            redact_command_line("/usr/bin/conn-attrib /data/prod-db1.pcap --redact -f json --min-pool-size 5 --uri=mongodb://u:p@db1/"),
            "conn-attrib [redacted] --redact -f json --min-pool-size 5 --uri=[redacted]"
        );
    }
}
