//! The client against real sockets on loopback: small servers on threads
//! that answer as told and hand back what they received.

use super::*;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::thread::JoinHandle;

/// A server for one connection: reads the request head (and a body of
/// `Content-Length`), writes `answer`, and returns what it read.
fn serve_once(answer: &'static [u8]) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let got = read_request(&s);
        (&s).write_all(answer).unwrap();
        got
    });
    (format!("127.0.0.1:{}", addr.port()), handle)
}

fn read_request(s: &TcpStream) -> String {
    let mut r = BufReader::new(s);
    let mut got = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        got.push_str(&line);
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    got.push_str("\r\n");
    got.push_str(&String::from_utf8_lossy(&body));
    got
}

fn get(url: &str) -> Request<'_> {
    Request {
        method: "GET",
        url,
        headers: &[],
        body: None,
        timeout: Duration::from_secs(5),
        redirects: 0,
        proxy: Proxy::Never,
        what: "test",
    }
}

#[test]
fn a_get_returns_the_status_and_says_who_asks() {
    let (addr, server) = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
    let url = format!("http://{addr}/health?x=1#frag");
    assert_eq!(send(&get(&url)), Ok(204));
    let got = server.join().unwrap();
    assert!(got.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{got}");
    assert!(got.contains(&format!("Host: {addr}\r\n")), "{got}");
    assert!(got.contains(&format!(
        "User-Agent: sheepdog/{} (test)\r\n",
        crate::VERSION
    )));
    assert!(got.contains("Connection: close\r\n"), "{got}");
}

#[test]
fn an_error_status_is_a_status_and_its_body_is_read_before_closing() {
    // Closing with unread data would reset the connection (the server sees
    // ECONNRESET instead of an orderly end): the body must be drained.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        read_request(&s);
        let body = vec![b'x'; 200_000];
        let head = format!(
            "HTTP/1.1 503 Unavailable\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).map(|_| rest.len())
    });
    assert_eq!(send(&get(&url)), Ok(503));
    let end = server.join().unwrap();
    assert!(
        matches!(end, Ok(0)),
        "the client must close in order: {end:?}"
    );
}

#[test]
fn interim_answers_are_skipped() {
    let (addr, server) = serve_once(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
          HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    );
    assert_eq!(send(&get(&format!("http://{addr}"))), Ok(200));
    server.join().unwrap();
}

#[test]
fn a_post_sends_its_body_with_length_type_and_headers() {
    let (addr, server) = serve_once(b"HTTP/1.0 200 OK\r\n\r\n");
    let url = format!("http://{addr}/ping/abc");
    let headers = [("X-Api-Key", "k1"), ("user-agent", "mine")];
    let req = Request {
        method: "POST",
        headers: &headers,
        body: Some("exit 1\nlast line"),
        ..get(&url)
    };
    assert_eq!(send(&req), Ok(200));
    let got = server.join().unwrap();
    assert!(got.starts_with("POST /ping/abc HTTP/1.1\r\n"), "{got}");
    assert!(got.contains("Content-Length: 16\r\n"), "{got}");
    assert!(
        got.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{got}"
    );
    assert!(got.contains("X-Api-Key: k1\r\n"), "{got}");
    assert!(got.contains("user-agent: mine\r\n"), "{got}");
    assert!(
        !got.contains("sheepdog/"),
        "the configured User-Agent replaces ours: {got}"
    );
    assert!(got.ends_with("\r\n\r\nexit 1\nlast line"), "{got}");
}

#[test]
fn headers_that_could_break_the_request_are_refused() {
    for (name, value) in [
        ("X-A", "a\r\nInjected: 1"),
        ("X A", "v"),
        ("", "v"),
        ("Content-Length", "3"),
        ("transfer-encoding", "chunked"),
    ] {
        let headers = [(name, value)];
        let req = Request {
            headers: &headers,
            ..get("http://127.0.0.1:9/")
        };
        match send(&req) {
            Err(Error::Failed { reason, permanent }) => {
                assert!(permanent, "{reason}");
                assert!(reason.starts_with(&format!("header {name:?}")), "{reason}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(header_problem("X-Custom_1", "any value\twith tab"), None);
}

#[test]
fn redirects_are_followed_only_when_asked_and_only_so_far() {
    // A chain of three servers: /a → /b (relative) → absolute → 200.
    let (third, s3) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let to_third: &'static str = Box::leak(
        format!("HTTP/1.1 307 Temporary\r\nLocation: http://{third}/end\r\n\r\n").into_boxed_str(),
    );
    let (second, s2) = serve_once(to_third.as_bytes());
    let to_second: &'static str = Box::leak(
        format!("HTTP/1.1 302 Found\r\nLocation: //{second}/next\r\nContent-Length: 0\r\n\r\n")
            .into_boxed_str(),
    );
    let (first, s1) = serve_once(to_second.as_bytes());
    let url = format!("http://{first}/start");
    let req = Request {
        redirects: 5,
        ..get(&url)
    };
    // The URL that answered is given, for messages.
    assert_eq!(
        send_to(&req),
        Ok((200, Some(format!("http://{third}/end"))))
    );
    assert!(s1.join().unwrap().starts_with("GET /start "));
    assert!(s2.join().unwrap().starts_with("GET /next "));
    assert!(s3.join().unwrap().starts_with("GET /end "));

    // Not asked: the 3xx is the answer.
    let (addr, s) = serve_once(b"HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\n\r\n");
    assert_eq!(send(&get(&format!("http://{addr}/"))), Ok(301));
    s.join().unwrap();

    // One allowed, two needed: a failure (a loop, or a chain too long),
    // never the 3xx, which expected_status 200-399 would pass.
    let (addr, s) = serve_once(b"HTTP/1.1 302 Found\r\nLocation: /again\r\n\r\n");
    let again: &'static str = Box::leak(
        format!("HTTP/1.1 302 Found\r\nLocation: http://{addr}/x\r\n\r\n").into_boxed_str(),
    );
    let (first, s0) = serve_once(again.as_bytes());
    let url = format!("http://{first}/");
    let req = Request {
        redirects: 1,
        ..get(&url)
    };
    let err = send(&req).expect_err("too many redirects");
    assert!(
        err.to_string().contains("stopped after 1 redirects"),
        "{err}"
    );
    s0.join().unwrap();
    s.join().unwrap();
}

#[test]
fn a_redirect_to_https_says_why_it_stops() {
    let (addr, s) = serve_once(b"HTTP/1.1 301 Moved\r\nLocation: https://example.com/\r\n\r\n");
    let url = format!("http://{addr}/");
    let req = Request {
        redirects: 5,
        ..get(&url)
    };
    let e = send(&req).unwrap_err();
    assert!(e.to_string().contains("https is not supported"), "{e}");
    s.join().unwrap();
}

#[test]
fn a_silent_server_times_out_by_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let req = Request {
        timeout: Duration::from_millis(200),
        ..get(&url)
    };
    // Accepted by the kernel's backlog, never answered.
    assert_eq!(send(&req), Err(Error::TimedOut));
    drop(listener);
}

#[test]
fn a_trickling_server_cannot_stretch_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        // One byte of a head that never ends, every 20 ms, until told.
        for b in b"HTTP/1.1 200 OK\r\nX-Slow: "
            .iter()
            .chain([b'a'; 10_000].iter())
        {
            if (&s).write_all(&[*b]).is_err() || stop_rx.try_recv().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let req = Request {
        timeout: Duration::from_millis(300),
        ..get(&url)
    };
    assert_eq!(send(&req), Err(Error::TimedOut));
    drop(stop_tx);
    server.join().unwrap();
}

#[test]
fn a_refused_connection_says_so() {
    // Bind then drop: nothing listens on the port now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let e = send(&get(&url)).unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(matches!(
        e,
        Error::Failed {
            permanent: false,
            ..
        }
    ));
}

#[test]
fn names_are_resolved() {
    let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\n\r\n");
    let port = addr.rsplit(':').next().unwrap();
    let url = format!("http://localhost:{port}/");
    // localhost is 127.0.0.1 then ::1 (`resolve`); the server is on
    // 127.0.0.1 only.
    assert_eq!(send(&get(&url)), Ok(200));
    server.join().unwrap();
}

#[test]
fn urls_parse_or_say_what_is_wrong() {
    let u = Url::parse("HTTP://[::1]:8080/a?b").unwrap();
    assert_eq!(
        (u.host, u.port, &*u.target, u.authority),
        ("::1", 8080, "/a?b", "[::1]:8080")
    );
    // A request target always starts with `/`: `GET ?q` is not HTTP.
    let u = Url::parse("http://example.com?q").unwrap();
    assert_eq!((u.host, u.port, &*u.target), ("example.com", 80, "/?q"));
    assert_eq!(&*Url::parse("http://h").unwrap().target, "/");
    assert_eq!(host_header(&Url::parse("http://h:80/").unwrap()), "h");
    assert_eq!(
        host_header(&Url::parse("http://[::1]:80/").unwrap()),
        "[::1]"
    );
    for (bad, why) in [
        ("ftp://x/", "expected http://"),
        ("http:///path", "expected HOST"),
        ("http://h:0/", "expected HOST"),
        ("http://h:99999/", "expected HOST"),
        ("http://user:pw@h/", "credentials"),
        ("http://h/a b", "percent-encoded"),
        ("127.0.0.1:80", "expected http://"),
    ] {
        let e = Url::parse(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    assert!(Url::parse("https://h/")
        .unwrap_err()
        .to_string()
        .contains("https is not supported"));
}

#[test]
fn redirect_locations_resolve_against_the_url() {
    let u = Url::parse("http://h:81/a/b?q").unwrap();
    assert_eq!(u.join("c"), "http://h:81/a/c");
    assert_eq!(u.join("/c"), "http://h:81/c");
    assert_eq!(u.join("//o/c"), "http://o/c");
    assert_eq!(u.join("http://o:2/"), "http://o:2/");
    assert_eq!(u.join("?x"), "http://h:81/a/b?x");
    // `://` further on is part of a path, not a scheme.
    assert_eq!(
        u.join("/login?next=http://h/x"),
        "http://h:81/login?next=http://h/x"
    );
    let bare = Url::parse("http://h?q").unwrap();
    assert_eq!(bare.join("c"), "http://h/c");
}

#[test]
fn the_proxy_comes_from_the_environment_unless_no_proxy_says_otherwise() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let none = env(&[]);
    assert_eq!(proxy_for("h", &none), Ok(None));
    let lower_first = env(&[("HTTP_PROXY", "http://upper:1"), ("http_proxy", "lower:2")]);
    let r = proxy_for("h", &lower_first).unwrap().unwrap();
    assert_eq!((r.host.as_str(), r.port, r.var), ("lower", 2, "http_proxy"));
    let all = env(&[("ALL_PROXY", "http://u:p@proxy/")]);
    let r = proxy_for("h", &all).unwrap().unwrap();
    assert_eq!((r.host.as_str(), r.port), ("proxy", PROXY_PORT));
    assert_eq!(r.auth.as_deref(), Some("Basic dTpw"));
    let bypass = env(&[("HTTP_PROXY", "p:3"), ("NO_PROXY", "localhost, .internal")]);
    assert_eq!(proxy_for("api.internal", &bypass), Ok(None));
    assert!(proxy_for("hc-ping.com", &bypass).unwrap().is_some());
    // An empty NO_PROXY does not hide a no_proxy that says something.
    let both = env(&[
        ("HTTP_PROXY", "p:3"),
        ("NO_PROXY", ""),
        ("no_proxy", ".internal"),
    ]);
    assert_eq!(proxy_for("api.internal", &both), Ok(None));
    let socks = env(&[("ALL_PROXY", "socks5://me:secret@p:1080/")]);
    let e = proxy_for("h", &socks).unwrap_err().to_string();
    assert!(
        e.contains("$ALL_PROXY") && e.contains("only http://"),
        "{e}"
    );
    // The password stays out of the message (and so out of the logs).
    assert!(
        e.contains("socks5://me:***@p:1080/") && !e.contains("secret"),
        "{e}"
    );
    assert_eq!(without_password("p:3128"), "p:3128");
    assert_eq!(without_password("http://u@p/x@y"), "http://u:***@p/x@y");
}

/// The route from `http_proxy` set to `value`.
fn proxy_from(value: &str) -> Result<Option<Route>, Error> {
    let value = value.to_string();
    proxy_for("h", &move |k: &str| {
        (k == "http_proxy").then(|| value.clone())
    })
}

#[test]
fn proxy_credentials_are_percent_decoded_user_and_password_apart() {
    for (url, pair) in [
        ("http://bob:p%40ss@proxy:3128", &b"bob:p@ss"[..]),
        ("http://bob:a%3Ab@proxy:3128", b"bob:a:b"),
        ("http://bob:100%25@proxy:3128", b"bob:100%"),
        ("http://b%3Ab:pw@proxy:3128", b"b:b:pw"),
        ("http://bob:%E9t%C3%A9@proxy:3128", b"bob:\xe9t\xc3\xa9"),
        // As curl: the first `:` splits, the last `@` ends the credentials.
        ("http://bob:a:b@c@proxy:3128", b"bob:a:b@c"),
        // RFC 7617 needs the `:` even without a password.
        ("http://bob@proxy:3128", b"bob:"),
    ] {
        let r = proxy_from(url).unwrap().unwrap();
        assert_eq!((r.host.as_str(), r.port), ("proxy", 3128), "{url}");
        let want = format!("Basic {}", base64(pair));
        assert_eq!(r.auth.as_deref(), Some(want.as_str()), "{url}");
    }
}

#[test]
fn proxy_passwords_stay_out_of_messages() {
    let r = proxy_from("http://bob:hunter2@proxy:3128")
        .unwrap()
        .unwrap();
    let shown = format!("{r:?}");
    assert!(shown.contains("proxy") && shown.contains("***"), "{shown}");
    assert!(!shown.contains(&base64(b"bob:hunter2")), "{shown}");
    // Where an unencoded `/` ends the password is a guess: nothing shown.
    for url in [
        "http://bob:hun/ter2@proxy:3128",
        "http://bob:12/ter2@proxy",
        "socks5://bob:hun/ter2@proxy",
    ] {
        let e = proxy_from(url).unwrap_err().to_string();
        assert!(e.contains("%2F") && !e.contains("ter2"), "{url}: {e}");
    }
    for url in [
        "socks5://bob:p%40ss@proxy:1080",
        "http://bob:p%40ss@proxy:port",
    ] {
        let e = proxy_from(url).unwrap_err().to_string();
        assert!(
            e.contains("bob:***@proxy") && !e.contains("ss"),
            "{url}: {e}"
        );
    }
}

#[test]
fn no_proxy_matches_names_domains_and_ranges() {
    let list = "localhost,.svc.cluster.local,example.org,10.0.0.0/8,[::1],fd00::/8";
    for host in [
        "localhost",
        "a.svc.cluster.local",
        "example.org",
        "www.example.org",
    ] {
        assert!(bypasses(list, host), "{host}");
    }
    for host in ["10.1.2.3", "::1", "fd12::1", "LOCALHOST."] {
        assert!(bypasses(list, host), "{host}");
    }
    for host in [
        "notexample.org",
        "11.0.0.1",
        "fe80::1",
        "hc-ping.com",
        "svc.cluster",
    ] {
        assert!(!bypasses(list, host), "{host}");
    }
    assert!(bypasses("*", "anything"));
    assert!(!bypasses("", "anything"));
    assert!(bypasses("0.0.0.0/0", "1.2.3.4"));
}

#[test]
fn a_proxy_gets_the_absolute_url_and_credentials() {
    let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\n\r\n");
    let (host, port) = addr.split_once(':').unwrap();
    let vars = [("http_proxy", format!("http://me:secret@{host}:{port}"))];
    let env = move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let req = Request {
        proxy: Proxy::FromEnv,
        ..get("http://hc-ping.example:8080/abc")
    };
    assert_eq!(send_with(&req, &env), Ok((200, None)));
    let got = server.join().unwrap();
    assert!(
        got.starts_with("GET http://hc-ping.example:8080/abc HTTP/1.1\r\n"),
        "{got}"
    );
    assert!(got.contains("Host: hc-ping.example:8080\r\n"), "{got}");
    assert!(
        got.contains("Proxy-Authorization: Basic bWU6c2VjcmV0\r\n"),
        "{got}"
    );
}

#[test]
fn base64_pads_like_the_standard() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}

#[test]
fn answers_that_are_not_http_are_errors() {
    let (addr, s) = serve_once(b"SSH-2.0-OpenSSH\r\n\r\n");
    let e = send(&get(&format!("http://{addr}/"))).unwrap_err();
    assert!(e.to_string().contains("not HTTP"), "{e}");
    s.join().unwrap();
    let (addr, s) = serve_once(b"");
    let e = send(&get(&format!("http://{addr}/"))).unwrap_err();
    assert!(e.to_string().contains("closed without answering"), "{e}");
    s.join().unwrap();
    assert_eq!(status_code("HTTP/1.1 200 OK"), Some(200));
    assert_eq!(status_code("HTTP/1.0 99 x"), None);
    assert_eq!(status_code("ICY 200 OK"), None);
}

#[test]
fn a_head_may_end_its_lines_in_a_bare_lf_and_a_bare_query_asks_for_slash() {
    let (addr, server) = serve_once(b"HTTP/1.0 200 OK\nContent-Length: 2\n\nok");
    let url = format!("http://{addr}?token=abc");
    assert_eq!(send(&get(&url)), Ok(200));
    let got = server.join().unwrap();
    assert!(got.starts_with("GET /?token=abc HTTP/1.1\r\n"), "{got}");
}

#[test]
fn a_chunked_body_ignores_any_length() {
    let head =
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked").unwrap();
    assert_eq!((head.length, head.chunked), (None, true));
    assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some((16, 19)));
    assert_eq!(head_end(b"HTTP/1.1 200 OK\n\nbody"), Some((15, 17)));
    assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n"), None);
}

#[test]
fn a_head_end_split_across_reads_is_found_where_the_search_resumes() {
    for whole in [
        &b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"[..],
        b"HTTP/1.0 200 OK\nA: b\n\nbody",
        b"HTTP/1.1 200 OK\r\n\nbody",
    ] {
        let want = head_end(whole);
        assert!(want.is_some());
        // The first read ends at `k`, without a whole end; read_head
        // searches the next time from `k - END_MAX`.
        for k in (0..whole.len()).filter(|&k| head_end(&whole[..k]).is_none()) {
            let from = k.saturating_sub(END_MAX);
            let got = head_end(&whole[from..]).map(|(end, body)| (from + end, from + body));
            assert_eq!(
                got,
                want,
                "{:?} read up to {k}",
                String::from_utf8_lossy(whole)
            );
        }
    }
}

#[test]
fn a_head_trickled_one_byte_a_write_is_read() {
    // One segment per byte (no Nagle). The pause only spreads the bytes
    // over many reads; the answer is the same however they are grouped.
    for (answer, status) in [
        (
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
            200,
        ),
        (b"HTTP/1.0 204 No Content\nX-A: b\n\n", 204),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_nodelay(true).unwrap();
            read_request(&s);
            for b in answer {
                if (&s).write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        assert_eq!(send(&get(&url)), Ok(status));
        server.join().unwrap();
    }
}

#[test]
fn a_body_that_never_ends_is_not_waited_for_until_the_deadline() {
    // The server promises 100 bytes, sends none and keeps the connection
    // open: the client must close on its own, long before its 60 s
    // deadline; the server gives it 20 s.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        read_request(&s);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            .unwrap();
        let mut rest = [0u8; 16];
        matches!(s.read(&mut rest), Ok(0))
    });
    let url = format!("http://{addr}/slow");
    let mut req = get(&url);
    req.timeout = Duration::from_secs(60);
    assert_eq!(send(&req), Ok(200));
    assert!(server.join().unwrap(), "the client did not close");
}
