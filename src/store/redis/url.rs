//! Showing a storage URL without its secrets.

/// `url` with every password replaced by `***`: the one in the userinfo of
/// each node (`redis://user:secret@host`, `redis+cluster://:s@a,:s@b`) and
/// any `password=` / `pass=` query parameter (`unix:///s.sock?pass=secret`).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let nodes: Vec<String> = authority
        .split(',')
        .map(|node| match node.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => node.to_owned(),
        })
        .collect();
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let mut out = format!("{scheme}://{}{path}", nodes.join(","));
    if let Some(query) = query {
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _))
                    if ["password", "pass"].contains(&name.to_ascii_lowercase().as_str()) =>
                {
                    format!("{name}=***")
                }
                _ => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        let cases = [
            ("redis://localhost:6379/0", "redis://localhost:6379/0"),
            ("redis://:s3cret@h:1/2", "redis://:***@h:1/2"),
            ("rediss://user:p@ss:w@h:1", "rediss://user:***@h:1"),
            ("redis://user@h", "redis://user@h"),
            (
                "redis+cluster://:a@h1:1,u:b@h2:2,h3:3",
                "redis+cluster://:***@h1:1,u:***@h2:2,h3:3",
            ),
            (
                "unix:///tmp/r.sock?db=1&pass=x&Password=y",
                "unix:///tmp/r.sock?db=1&pass=***&Password=***",
            ),
            ("memory", "memory"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
