//! Which local process owns a TCP connection, from Linux's /proc: `/proc/net/tcp` and
//! `tcp6` map each socket's endpoints to an inode, and `/proc/PID/fd/*` links
//! (`socket:[inode]`) map inodes to processes. Elsewhere, or without permission to read
//! other processes' fds, the map is simply empty.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    /// The container (cgroup path) the process runs in, when it is one.
    pub container: Option<String>,
}

/// A TCP socket seen in /proc, with its owner when found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub owner: Option<ProcessInfo>,
}

/// Sockets by their local endpoint (unique on a host for established TCP connections).
#[derive(Clone, Debug, Default)]
pub struct SocketOwners {
    by_local: HashMap<SocketAddr, OwnedSocket>,
}

impl SocketOwners {
    /// Read /proc now (`root` is "/proc" except in tests).
    pub fn snapshot(root: &Path) -> SocketOwners {
        let mut sockets: HashMap<u64, (SocketAddr, SocketAddr)> = HashMap::new();
        for table in ["net/tcp", "net/tcp6"] {
            if let Ok(text) = fs::read_to_string(root.join(table)) {
                for line in text.lines().skip(1) {
                    if let Some((inode, local, remote)) = parse_tcp_line(line) {
                        sockets.insert(inode, (local, remote));
                    }
                }
            }
        }
        let mut by_local = HashMap::new();
        let mut owners: HashMap<u64, ProcessInfo> = HashMap::new();
        if let Ok(procs) = fs::read_dir(root) {
            for entry in procs.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
                    continue;
                };
                let mut info: Option<ProcessInfo> = None;
                for fd in fds.flatten() {
                    let Ok(target) = fs::read_link(fd.path()) else {
                        continue;
                    };
                    let Some(inode) = target
                        .to_str()
                        .and_then(|t| t.strip_prefix("socket:["))
                        .and_then(|t| t.strip_suffix(']'))
                        .and_then(|t| t.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    if sockets.contains_key(&inode) {
                        let info = info.get_or_insert_with(|| process_info(root, pid));
                        owners.entry(inode).or_insert_with(|| info.clone());
                    }
                }
            }
        }
        for (inode, (local, remote)) in sockets {
            by_local.insert(
                local,
                OwnedSocket {
                    local,
                    remote,
                    owner: owners.get(&inode).cloned(),
                },
            );
        }
        SocketOwners { by_local }
    }

    /// Add what a newer snapshot knows (connections opened since), keeping older entries
    /// (connections closed since are still attributed).
    pub fn merge(&mut self, newer: SocketOwners) {
        for (k, v) in newer.by_local {
            match self.by_local.get(&k) {
                Some(old) if old.owner.is_some() && v.owner.is_none() => {}
                _ => {
                    self.by_local.insert(k, v);
                }
            }
        }
    }

    /// The owner of the connection between `a` and `b`, whichever end is local.
    pub fn owner(&self, a: SocketAddr, b: SocketAddr) -> Option<&ProcessInfo> {
        [(a, b), (b, a)].into_iter().find_map(|(local, remote)| {
            self.by_local
                .get(&local)
                .filter(|s| s.remote == remote)
                .and_then(|s| s.owner.as_ref())
        })
    }

    /// Sockets whose remote port is one of `ports` (connections to MongoDB servers).
    pub fn to_ports<'a>(&'a self, ports: &'a [u16]) -> impl Iterator<Item = &'a OwnedSocket> {
        self.by_local
            .values()
            .filter(move |s| ports.contains(&s.remote.port()))
    }

    pub fn len(&self) -> usize {
        self.by_local.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_local.is_empty()
    }
}

fn process_info(root: &Path, pid: u32) -> ProcessInfo {
    let dir = root.join(pid.to_string());
    let name = fs::read_to_string(dir.join("comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cmdline = fs::read(dir.join("cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let container = fs::read_to_string(dir.join("cgroup"))
        .ok()
        .and_then(|text| container_of(&text));
    ProcessInfo {
        pid,
        name,
        cmdline,
        container,
    }
}

/// The cgroup path when it names a container runtime (docker, containerd, podman, k8s, lxc).
fn container_of(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        ["docker", "containerd", "kubepods", "libpod", "lxc", "crio"]
            .iter()
            .any(|k| path.contains(k))
            .then(|| path.to_string())
    })
}

/// One line of /proc/net/tcp(6): `sl local rem st … uid timeout inode …`, addresses as
/// hex words in host (little-endian) byte order, ports big-endian hex.
fn parse_tcp_line(line: &str) -> Option<(u64, SocketAddr, SocketAddr)> {
    let mut fields = line.split_whitespace();
    let _sl = fields.next()?;
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = fields.next()?;
    // 01 = ESTABLISHED; closing states still belong to their process.
    if state == "0A" {
        return None; // LISTEN: not a connection
    }
    let inode = fields.nth(5)?.parse().ok()?;
    (inode != 0).then_some((inode, local, remote))
}

fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.swap_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp_lines() {
        let v4 = "   3: 0100007F:C350 0B00007F:6989 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 20 4 30 10 -1";
        let (inode, local, remote) = parse_tcp_line(v4).unwrap();
        assert_eq!(inode, 123456);
        assert_eq!(local.to_string(), "127.0.0.1:50000");
        assert_eq!(remote.to_string(), "127.0.0.11:27017");
        let v6 = "   0: 00000000000000000000000001000000:C350 00000000000000000000000001000000:6989 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1";
        let (_, local, _) = parse_tcp_line(v6).unwrap();
        assert_eq!(local.to_string(), "[::1]:50000");
        let listen = "   1: 00000000:6989 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1";
        assert!(parse_tcp_line(listen).is_none());
    }

    #[test]
    fn container_from_cgroup() {
        assert_eq!(
            container_of("0::/system.slice/docker-0123abcd.scope\n").as_deref(),
            Some("/system.slice/docker-0123abcd.scope")
        );
        assert_eq!(
            container_of("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn finds_its_own_socket() {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = TcpStream::connect(server).unwrap();
        let local = client.local_addr().unwrap();
        let owners = SocketOwners::snapshot(Path::new("/proc"));
        let owner = owners
            .owner(local, server)
            .expect("own connection attributed");
        assert_eq!(owner.pid, std::process::id());
        assert!(!owner.cmdline.is_empty());
    }
}
