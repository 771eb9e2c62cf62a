//! The cluster side of a capture taken on (or beside) the servers: which member opened
//! each internal connection, the replica set's current membership, outgoing connections
//! and client monitors still pointing at hosts outside it, the `dropConnections` commands
//! that would clear them, and the `dropConnections` commands the capture already shows.
//!
//! Membership comes from hello replies (setName, setVersion, hosts, passives, arbiters,
//! me; the reply with the highest setVersion of a set wins) or from the user
//! (`--members`, `--members-file` with `rs.conf()` / `rs.status()` as JSON).
//!
//! `dropConnections` (src/mongo/db/commands/drop_connections_command.cpp; manual:
//! reference/command/dropConnections) drops the receiving mongod/mongos's *outgoing*
//! pooled connections to each `hostAndPort` element; it must run against `admin`, needs the
//! `dropConnections` action on the cluster resource, and silently ignores an element
//! without both a host and a port. Its effect is checked with `connPoolStats`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use super::Attributed;
use crate::classify::{Class, Role};
use crate::net;

/// Membership the user gave instead of (or beside) what the capture shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipInput {
    /// "members" (`--members`) or "members-file" (`--members-file`).
    pub source: &'static str,
    pub set_name: Option<String>,
    pub set_version: Option<i64>,
    pub hosts: Vec<String>,
}

impl MembershipInput {
    /// `--members host:port,host:port`.
    pub fn from_list(list: &str) -> Result<MembershipInput, String> {
        let hosts: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if hosts.is_empty() {
            return Err("--members lists no host".into());
        }
        for h in &hosts {
            if split_host_port(h).is_none() {
                return Err(format!(
                    "--members: {h} has no port (write host:port, as in the replica-set config)"
                ));
            }
        }
        Ok(MembershipInput {
            source: "members",
            hosts,
            ..MembershipInput::default()
        })
    }

    /// The JSON of `rs.conf()` (`{_id, version, members: [{host}]}`), of
    /// `replSetGetConfig` (`{config: {...}}`) or of `rs.status()` (`{set, members: [{name}]}`),
    /// e.g. `mongosh --quiet --eval 'JSON.stringify(rs.conf())'`.
    pub fn from_json(text: &str) -> Result<MembershipInput, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("--members-file: not JSON: {e}"))?;
        let doc = v.get("config").unwrap_or(&v);
        let members = doc.get("members").and_then(|m| m.as_array()).ok_or(
            "--members-file: no members array (expected rs.conf() or rs.status() as JSON)",
        )?;
        let hosts: Vec<String> = members
            .iter()
            .filter_map(|m| {
                m.get("host")
                    .or_else(|| m.get("name"))
                    .and_then(|h| h.as_str())
                    .map(str::to_string)
            })
            .collect();
        if hosts.is_empty() {
            return Err(
                "--members-file: no member has a host (rs.conf()) or name (rs.status())".into(),
            );
        }
        let number = |v: &serde_json::Value| {
            v.as_i64()
                .or_else(|| v.get("$numberInt").and_then(|n| n.as_str()?.parse().ok()))
                .or_else(|| v.get("$numberLong").and_then(|n| n.as_str()?.parse().ok()))
        };
        Ok(MembershipInput {
            source: "members-file",
            set_name: doc
                .get("_id")
                .or_else(|| doc.get("set"))
                .and_then(|s| s.as_str())
                .map(str::to_string),
            set_version: doc.get("version").and_then(number),
            hosts,
        })
    }
}

/// One replica set's current membership.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Membership {
    pub set_name: Option<String>,
    pub set_version: Option<i64>,
    /// "hello" (replies in the capture), "members" or "members-file".
    pub source: &'static str,
    /// hosts, passives and arbiters of the current config.
    pub members: Vec<String>,
    /// Hosts of older configs (lower setVersion) or that answered as members of the set
    /// earlier, and are no longer members.
    pub removed: Vec<String>,
}

/// A connection still open at the end of the capture to a host outside the membership.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StaleConnection {
    pub client: String,
    pub server: String,
    /// The target as the replica-set config names it (hello `me`), else its address.
    pub host: String,
    /// "internal" (a member's outgoing connection) or "client-monitor".
    pub kind: &'static str,
    /// The member that opened it (internal connections).
    pub member: Option<String>,
    pub client_id: String,
    pub class: &'static str,
    pub role: Option<&'static str>,
    pub last_seen: f64,
    /// Still open when the capture ended (else it closed later than the membership
    /// change allows a monitor: the client kept monitoring the removed host).
    pub open_at_end: bool,
}

/// What to run on one member to clear its stale outgoing connections.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropPlan {
    /// Run on this member (connect to it directly, against `admin`).
    pub member: String,
    pub hosts: Vec<String>,
    /// Stale connections it holds to those hosts.
    pub connections: usize,
    pub command: String,
    pub privilege: String,
    pub check: String,
}

/// An internal connection a captured `dropConnections` targeted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetedConnection {
    pub client: String,
    pub server: String,
    pub host: String,
    pub role: Option<&'static str>,
    /// Seconds from the command to the connection's close.
    pub closed_after_s: Option<f64>,
    pub still_open: bool,
}

/// A `dropConnections` command seen in the capture, linted and checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropSeen {
    pub sender: String,
    pub client_id: String,
    /// The member that received (and ran) it.
    pub member: String,
    pub ts: f64,
    /// `hostAndPort` as sent (`null`: an element that is not a string).
    pub targets: Vec<Option<String>>,
    pub ok: Option<bool>,
    pub errmsg: Option<String>,
    pub reply_ms: Option<f64>,
    /// Elements the server ignores (no host, no port, or not a string).
    pub ignored: Vec<String>,
    /// The list to send instead, when an element was ignored.
    pub corrected: Option<Vec<String>>,
    pub corrected_command: Option<String>,
    /// Connections from the receiving member to the (valid) targets, open when it ran.
    pub targeted: Vec<TargetedConnection>,
    /// Connections to the ignored elements' hosts that the command therefore left open.
    pub missed: Vec<TargetedConnection>,
    pub summary: String,
}

/// The cluster-side findings of a report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cluster {
    pub membership: Vec<Membership>,
    pub stale: Vec<StaleConnection>,
    pub drop_connections: Vec<DropPlan>,
    pub drop_connections_seen: Vec<DropSeen>,
    /// Per connection (index-aligned with the attribution): the member that opened it,
    /// for internal connections.
    #[serde(skip)]
    pub origins: Vec<Option<String>>,
    /// Internal connections in the capture.
    pub internal_connections: usize,
}

impl Cluster {
    /// Nothing cluster-side in the capture: printers leave the section out.
    pub fn is_empty(&self) -> bool {
        self.internal_connections == 0
            && self.stale.is_empty()
            && self.drop_connections_seen.is_empty()
            && self.membership.iter().all(|m| m.removed.is_empty())
    }
}

pub const PRIVILEGE: &str = "the dropConnections action on the cluster resource: a role with privileges [{resource: {cluster: true}, actions: [\"dropConnections\"]}]";

/// `db.adminCommand({dropConnections: 1, hostAndPort: [...]})`.
pub fn drop_command(hosts: &[String]) -> String {
    let list: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "db.adminCommand({{dropConnections: 1, hostAndPort: [{}]}})",
        list.join(", ")
    )
}

fn check_command(hosts: &[String]) -> String {
    format!(
        "db.adminCommand({{connPoolStats: 1}}) on the same member: {} should be gone from `hosts` (or show inUse 0, available 0, created 0 since)",
        hosts.join(", ")
    )
}

/// `host:port` → (host, port); `[v6]:port` too. `None` without a numeric port.
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(':') && !s.starts_with('[') {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// Compare host strings as the server does (case-insensitive host, exact port).
fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `map.entry(key.to_string()).or_default()`, copying the key only when it is new.
fn entry_of<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted")
}

/// Analyse the cluster side of classified connections. `capture_end` is the last
/// timestamp of the capture.
pub fn analyse(connections: &[Attributed], given: Option<&MembershipInput>) -> Cluster {
    // Each server endpoint's name in the replica-set config (hello `me`).
    let mut names: HashMap<SocketAddr, String> = HashMap::default();
    // Configs seen: set name → setVersion → hosts.
    let mut configs: BTreeMap<String, BTreeMap<i64, BTreeSet<String>>> = BTreeMap::new();
    // Hosts that answered hello as a member of a set: set name → names.
    let mut claimed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut servers_by_ip: HashMap<IpAddr, BTreeSet<SocketAddr>> = HashMap::default();
    for c in connections {
        servers_by_ip
            .entry(c.obs.server.ip())
            .or_default()
            .insert(c.obs.server);
        let Some(s) = &c.obs.server_info else {
            continue;
        };
        if let Some(me) = &s.me {
            names.entry(c.obs.server).or_insert_with(|| me.clone());
        }
        // Thousands of connections repeat a few sets and hosts: the maps are looked up
        // by reference, and a name is copied only the first time it is seen.
        if let Some(set) = &s.set_name {
            if let Some(v) = s.set_version {
                let hosts = entry_of(&mut configs, set).entry(v).or_default();
                for host in s.hosts.iter().chain(&s.passives).chain(&s.arbiters) {
                    if !hosts.contains(host) {
                        hosts.insert(host.clone());
                    }
                }
            }
            let members = entry_of(&mut claimed, set);
            match &s.me {
                Some(me) if members.contains(me) => {}
                Some(me) => {
                    members.insert(me.clone());
                }
                None => {
                    members.insert(net::addr_text(c.obs.server));
                }
            }
        }
    }
    let display = |addr: &SocketAddr| -> String {
        names
            .get(addr)
            .cloned()
            .unwrap_or_else(|| net::addr_text(*addr))
    };

    let mut membership: Vec<Membership> = Vec::new();
    let removed_of = |set: Option<&str>, current: &[String]| -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for (name, versions) in &configs {
            if set.is_some_and(|s| s != name) {
                continue;
            }
            for hosts in versions.values() {
                out.extend(hosts.iter().cloned());
            }
            if let Some(c) = claimed.get(name) {
                out.extend(c.iter().cloned());
            }
        }
        out.into_iter()
            .filter(|h| !current.iter().any(|m| same(m, h)))
            .collect()
    };
    match given {
        Some(g) => membership.push(Membership {
            set_name: g.set_name.clone(),
            set_version: g.set_version,
            source: g.source,
            members: g.hosts.clone(),
            removed: removed_of(g.set_name.as_deref(), &g.hosts),
        }),
        None => {
            for (name, versions) in &configs {
                let Some((version, hosts)) = versions.iter().next_back() else {
                    continue;
                };
                let members: Vec<String> = hosts.iter().cloned().collect();
                let removed = removed_of(Some(name), &members);
                membership.push(Membership {
                    set_name: Some(name.clone()),
                    set_version: Some(*version),
                    source: "hello",
                    members,
                    removed,
                });
            }
        }
    }
    let is_member = |addr: &SocketAddr| -> bool {
        let name = display(addr);
        let plain = net::addr_text(*addr);
        membership
            .iter()
            .flat_map(|m| m.members.iter())
            .any(|m| same(m, &name) || same(m, &plain))
    };
    let is_removed = |addr: &SocketAddr| -> bool {
        let name = display(addr);
        let plain = net::addr_text(*addr);
        membership
            .iter()
            .flat_map(|m| m.removed.iter())
            .any(|m| same(m, &name) || same(m, &plain))
    };

    // The member that opened each internal connection: the listener on the client's
    // address (a member connects from its own host), else the heartbeat's `from`.
    let origins: Vec<Option<String>> = connections
        .iter()
        .map(|c| {
            if c.verdict.class != Class::Internal {
                return None;
            }
            if let Some(from) = &c.obs.cluster.heartbeat_from {
                return Some(from.clone());
            }
            match servers_by_ip.get(&c.obs.client.ip()) {
                Some(set) if set.len() == 1 => set.iter().next().map(display),
                _ => None,
            }
        })
        .collect();

    // When the current config was first announced to a connection that knew an older one.
    let reconfig_ts = connections
        .iter()
        .filter(|c| {
            c.obs.server_info.as_ref().is_some_and(|s| {
                membership.iter().any(|m| {
                    m.source == "hello"
                        && m.set_version == s.set_version
                        && m.set_name == s.set_name
                })
            })
        })
        .filter_map(|c| c.obs.hello.newer_config_ts)
        .min_by(f64::total_cmp);

    // Asked once per server, not per connection: each asking formats two names.
    let members: HashMap<SocketAddr, bool> = servers_by_ip
        .values()
        .flatten()
        .map(|addr| (*addr, is_member(addr)))
        .collect();
    let mut stale = Vec::new();
    for (c, origin) in connections.iter().zip(&origins) {
        let member = || {
            members
                .get(&c.obs.server)
                .copied()
                .unwrap_or_else(|| is_member(&c.obs.server))
        };
        if membership.is_empty() || member() {
            continue;
        }
        // A closed monitor still counts when it kept checking the removed host for more
        // than two of its heartbeats after the new config was announced: a driver that
        // follows the primary's host list closes it at its next check.
        let monitored_on = || {
            let heartbeat = c
                .obs
                .hello
                .reply_intervals
                .mean()
                .or_else(|| c.obs.hello.request_intervals.median())
                .unwrap_or(10.0);
            let last = c
                .obs
                .hello
                .last_ts
                .unwrap_or(c.obs.last_seen)
                .max(c.obs.last_seen);
            reconfig_ts.is_some_and(|r| last - r > 2.0 * heartbeat)
        };
        let open_at_end = c.obs.closed.is_none();
        if !(open_at_end || c.verdict.class.is_monitor() && monitored_on()) {
            continue;
        }
        let role = c.verdict.role;
        let kind = match c.verdict.class {
            // Replication talks only to members; a sharding pool may rightly talk to other
            // shards and config servers, so it is stale only towards a removed member.
            Class::Internal
                if is_removed(&c.obs.server)
                    || (given.is_some() && role != Some(Role::ShardingPool)) =>
            {
                "internal"
            }
            class if class.is_monitor() && is_removed(&c.obs.server) => "client-monitor",
            _ => continue,
        };
        stale.push(StaleConnection {
            client: net::addr_text(c.obs.client),
            server: net::addr_text(c.obs.server),
            host: display(&c.obs.server),
            kind,
            member: origin.clone(),
            client_id: c.client_id.clone(),
            class: c.verdict.class.name(),
            role: role.map(Role::name),
            last_seen: c.obs.last_seen,
            open_at_end,
        });
    }

    let mut by_member: BTreeMap<String, (BTreeSet<String>, usize)> = BTreeMap::new();
    for s in stale.iter().filter(|s| s.kind == "internal") {
        let member = s.member.clone().unwrap_or_else(|| {
            format!(
                "the mongod/mongos on {}",
                s.client.rsplit_once(':').map_or(&*s.client, |(h, _)| h)
            )
        });
        let entry = by_member.entry(member).or_default();
        entry.0.insert(s.host.clone());
        entry.1 += 1;
    }
    let drop_connections = by_member
        .into_iter()
        .map(|(member, (hosts, connections))| {
            let hosts: Vec<String> = hosts.into_iter().collect();
            DropPlan {
                command: drop_command(&hosts),
                check: check_command(&hosts),
                privilege: PRIVILEGE.into(),
                member,
                hosts,
                connections,
            }
        })
        .collect();

    let internal_connections = connections
        .iter()
        .filter(|c| c.verdict.class == Class::Internal)
        .count();
    let drop_connections_seen = drops_seen(connections, &origins, &display, &servers_by_ip);
    Cluster {
        membership,
        stale,
        drop_connections,
        drop_connections_seen,
        origins,
        internal_connections,
    }
}

fn drops_seen(
    connections: &[Attributed],
    origins: &[Option<String>],
    display: &dyn Fn(&SocketAddr) -> String,
    servers_by_ip: &HashMap<IpAddr, BTreeSet<SocketAddr>>,
) -> Vec<DropSeen> {
    // Ports known per host (names and addresses), to complete an element lacking its port.
    let mut ports: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for set in servers_by_ip.values() {
        for addr in set {
            ports
                .entry(addr.ip().to_string())
                .or_default()
                .insert(addr.port());
            if let Some((h, p)) = split_host_port(&display(addr)) {
                ports.entry(h.to_ascii_lowercase()).or_default().insert(p);
            }
        }
    }
    // Internal connections by the member that opened them (its address, or its name as
    // the heartbeat gave it): each dropConnections looks up its receiver's connections
    // here instead of scanning every connection of the capture.
    let mut by_ip: HashMap<IpAddr, Vec<usize>> = HashMap::default();
    let mut by_origin: HashMap<&str, Vec<usize>> = HashMap::default();
    for (i, (c, origin)) in connections.iter().zip(origins).enumerate() {
        if c.verdict.class == Class::Internal {
            by_ip.entry(c.obs.client.ip()).or_default().push(i);
            if let Some(origin) = origin {
                by_origin.entry(origin.as_str()).or_default().push(i);
            }
        }
    }
    let mut out = Vec::new();
    for c in connections {
        for d in &c.obs.cluster.drop_connections {
            let member_addr = c.obs.server;
            let member_name = display(&member_addr);
            let mut opened_by_member: Vec<usize> = by_ip
                .get(&member_addr.ip())
                .into_iter()
                .chain(by_origin.get(member_name.as_str()))
                .flatten()
                .copied()
                .collect();
            opened_by_member.sort_unstable();
            opened_by_member.dedup();
            let mut valid: Vec<String> = Vec::new();
            let mut ignored: Vec<String> = Vec::new();
            let mut fixed: Vec<String> = Vec::new();
            for t in &d.targets {
                match t {
                    Some(t) if split_host_port(t).is_some() => valid.push(t.clone()),
                    Some(t) => {
                        ignored.push(format!("\"{t}\" (no port)"));
                        let host = t.trim().trim_start_matches('[').trim_end_matches(']');
                        if host.is_empty() {
                            continue;
                        }
                        match ports.get(&host.to_ascii_lowercase()) {
                            Some(ps) if !ps.is_empty() => {
                                fixed.extend(ps.iter().map(|p| format!("{host}:{p}")))
                            }
                            _ => fixed.push(format!("{host}:27017")),
                        }
                    }
                    None => ignored.push("a non-string element".into()),
                }
            }
            let corrected = (!ignored.is_empty()).then(|| {
                let mut all = valid.clone();
                for f in fixed.iter() {
                    if !all.iter().any(|v| same(v, f)) {
                        all.push(f.clone());
                    }
                }
                all
            });
            // The receiving member's own outgoing connections: opened from its address.
            let member_conns = opened_by_member
                .iter()
                .map(|&i| &connections[i])
                .filter(|o| o.obs.first_seen <= d.ts && o.obs.closed.is_none_or(|t| t > d.ts));
            let mut targeted = Vec::new();
            let mut missed = Vec::new();
            for o in member_conns {
                let name = display(&o.obs.server);
                let plain = net::addr_text(o.obs.server);
                let matches =
                    |list: &[String]| list.iter().any(|t| same(t, &name) || same(t, &plain));
                let entry = TargetedConnection {
                    client: net::addr_text(o.obs.client),
                    server: plain.clone(),
                    host: name.clone(),
                    role: o.verdict.role.map(Role::name),
                    closed_after_s: o.obs.closed.map(|t| t - d.ts),
                    still_open: o.obs.closed.is_none(),
                };
                if matches(&valid) {
                    targeted.push(entry);
                } else if matches(&fixed) {
                    missed.push(entry);
                }
            }
            let closed: Vec<f64> = targeted.iter().filter_map(|t| t.closed_after_s).collect();
            let open = targeted.iter().filter(|t| t.still_open).count();
            let mut parts = Vec::new();
            match d.ok {
                Some(true) => parts.push("ok".to_string()),
                Some(false) => parts.push(format!(
                    "failed: {}",
                    d.errmsg.as_deref().unwrap_or("no errmsg")
                )),
                None => parts.push("no reply in the capture".into()),
            }
            if valid.is_empty() {
                parts.push("no element names a host:port, so nothing was dropped".into());
            } else if targeted.is_empty() {
                parts.push(format!(
                    "no internal connection from {} to {} was open when it ran",
                    display(&member_addr),
                    if valid.is_empty() {
                        "any valid target".to_string()
                    } else {
                        valid.join(", ")
                    }
                ));
            } else {
                if !closed.is_empty() {
                    let max = closed.iter().cloned().fold(0.0, f64::max);
                    parts.push(format!(
                        "{} of {} targeted connection{} closed within {:.3} s",
                        closed.len(),
                        targeted.len(),
                        if targeted.len() == 1 { "" } else { "s" },
                        max
                    ));
                }
                if open > 0 {
                    parts.push(format!("{open} still open at the end of the capture"));
                }
            }
            if !ignored.is_empty() {
                parts.push(format!(
                    "ignored by the server: {}{}",
                    ignored.join(", "),
                    if missed.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", so {} connection{} to {} stayed open",
                            missed.len(),
                            if missed.len() == 1 { "" } else { "s" },
                            missed
                                .iter()
                                .map(|m| m.host.as_str())
                                .collect::<BTreeSet<_>>()
                                .into_iter()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ));
            }
            out.push(DropSeen {
                sender: net::addr_text(c.obs.client),
                client_id: c.client_id.clone(),
                member: display(&member_addr),
                ts: d.ts,
                targets: d.targets.clone(),
                ok: d.ok,
                errmsg: d.errmsg.clone(),
                reply_ms: d.replied.map(|r| (r - d.ts) * 1000.0),
                ignored,
                corrected_command: corrected.as_deref().map(drop_command),
                corrected,
                targeted,
                missed,
                summary: parts.join("; "),
            });
        }
    }
    out.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    out
}

#[cfg(test)]
mod tests;
