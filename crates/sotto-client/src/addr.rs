//! Server addresses: `host:port` as the user types it, normalized so the same
//! server always gets the same line in `known_servers` and the same device
//! file. IPv6 literals must be written in brackets (`[::1]:7777`).

use std::fmt;

/// A parsed `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name or IP literal, lower case, without brackets.
    pub host: String,
    pub port: u16,
}

impl ServerAddr {
    /// Parses `host:port` or `[ipv6]:port`.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let input = input.trim();
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or("expected [IPv6]:port")?;
            (host, port)
        } else {
            let (host, port) = input.rsplit_once(':').ok_or("expected host:port")?;
            if host.contains(':') {
                return Err("write IPv6 addresses in brackets, like [::1]:port");
            }
            (host, port)
        };
        if host.is_empty() {
            return Err("the host is empty");
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err("the host contains invalid characters");
        }
        let port: u16 = port
            .parse()
            .map_err(|_| "the port must be a number from 1 to 65535")?;
        if port == 0 {
            return Err("the port must be a number from 1 to 65535");
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// A form of the address safe to use as part of a file name.
    pub fn file_name_part(&self) -> String {
        self.to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// Parses a server, or the nodes of a cluster separated by commas
/// (`a.example.org:7443,b.example.org:7443`): one or more addresses, tried
/// in turn. The list, normalized, names the server in `known_servers`:
/// every node must present the one certificate pinned for it.
pub fn parse_list(input: &str) -> Result<Vec<ServerAddr>, &'static str> {
    let addrs = input
        .split(',')
        .map(ServerAddr::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.len() > MAX_ADDRESSES {
        return Err("at most 16 addresses");
    }
    for (i, addr) in addrs.iter().enumerate() {
        if addrs[..i].contains(addr) {
            return Err("an address is listed twice");
        }
    }
    Ok(addrs)
}

/// Addresses one server (cluster) may be given by.
pub const MAX_ADDRESSES: usize = 16;

/// The list as one name.
pub fn list_name(addrs: &[ServerAddr]) -> String {
    addrs
        .iter()
        .map(ServerAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let a = ServerAddr::parse(" Chat.Example.org:7777 ").unwrap();
        assert_eq!(a.host, "chat.example.org");
        assert_eq!(a.port, 7777);
        assert_eq!(a.to_string(), "chat.example.org:7777");
        let v6 = ServerAddr::parse("[::1]:80").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:80");
        assert_eq!(v6.file_name_part(), "___1__80");
        assert_eq!(
            ServerAddr::parse("127.0.0.1:4000")
                .unwrap()
                .file_name_part(),
            "127.0.0.1_4000"
        );
    }

    #[test]
    fn parses_lists_of_nodes() {
        let nodes = parse_list("A:1, b:2,[::1]:3").unwrap();
        assert_eq!(list_name(&nodes), "a:1,b:2,[::1]:3");
        assert_eq!(parse_list("a:1").unwrap().len(), 1);
        assert!(parse_list("a:1,a:1").is_err());
        assert!(parse_list("a:1,").is_err());
        let many: Vec<String> = (1..=17).map(|port| format!("a:{port}")).collect();
        assert_eq!(parse_list(&many.join(",")), Err("at most 16 addresses"));
        assert_eq!(parse_list(&many[..16].join(",")).map(|a| a.len()), Ok(16));
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "host",
            ":80",
            "host:",
            "host:0",
            "host:99999",
            "::1:80",
            "[::1]80",
            "a b:1",
        ] {
            assert!(ServerAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
