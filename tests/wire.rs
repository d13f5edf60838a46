//! Raw wire tests: malformed and hostile protocol messages never crash the server; each
//! gets an error or a closed connection, and the server keeps serving everyone else.

mod support;

use std::time::Duration;

use rand::Rng;
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn startup(user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for (k, v) in [("user", user), ("database", "default")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstring(text: &str) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    out.push(0);
    out
}

/// Reads messages until one with `tag` arrives (or the connection closes); returns every tag seen.
async fn read_until(stream: &mut TcpStream, tag: u8) -> Vec<u8> {
    let mut tags = Vec::new();
    loop {
        let mut header = [0u8; 5];
        match tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header)).await {
            Ok(Ok(_)) => {}
            _ => return tags,
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        if stream.read_exact(&mut body).await.is_err() {
            return tags;
        }
        tags.push(header[0]);
        if header[0] == tag {
            return tags;
        }
    }
}

async fn authenticated(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(&startup("raw")).await.expect("startup");
    let tags = read_until(&mut stream, b'R').await;
    assert_eq!(tags.last(), Some(&b'R'), "asked for a password");
    stream
        .write_all(&message(b'p', &cstring(&server.admin_token)))
        .await
        .expect("password");
    let tags = read_until(&mut stream, b'Z').await;
    assert_eq!(tags.last(), Some(&b'Z'), "ready for query: {tags:?}");
    stream
}

async fn still_serves(server: &TestServer) {
    let client = server.connect().await;
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("select 1")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn garbage_and_absurd_lengths_before_startup() {
    let server = TestServer::start().await;
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0],
        vec![0, 0, 0, 4],
        vec![0, 0, 0, 8, 0, 0, 0, 0],
        vec![0; 3],
    ] {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
    }
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn errors_after_authentication_keep_the_connection_usable() {
    let server = TestServer::start().await;
    let mut stream = authenticated(&server).await;
    // Invalid UTF-8 in a query.
    stream
        .write_all(&message(b'Q', b"SELECT \xff\xfe\0"))
        .await
        .expect("send");
    let tags = read_until(&mut stream, b'Z').await;
    assert!(tags.contains(&b'E'), "error for invalid UTF-8: {tags:?}");
    // Bind with a parameter the statement does not have, then Sync.
    let mut parse = cstring("s1");
    parse.extend(cstring("SELECT 1"));
    parse.extend_from_slice(&0u16.to_be_bytes());
    let mut bind = cstring("");
    bind.extend(cstring("s1"));
    bind.extend_from_slice(&0u16.to_be_bytes());
    bind.extend_from_slice(&1u16.to_be_bytes());
    bind.extend_from_slice(&1u32.to_be_bytes());
    bind.push(b'7');
    bind.extend_from_slice(&0u16.to_be_bytes());
    let mut execute = cstring("");
    execute.extend_from_slice(&0u32.to_be_bytes());
    let mut batch = message(b'P', &parse);
    batch.extend(message(b'B', &bind));
    batch.extend(message(b'E', &execute));
    batch.extend(message(b'S', &[]));
    stream.write_all(&batch).await.expect("send");
    let tags = read_until(&mut stream, b'Z').await;
    assert!(tags.contains(&b'E'), "error for the bad bind: {tags:?}");
    // The same connection still answers.
    stream
        .write_all(&message(b'Q', &cstring("SELECT 1")))
        .await
        .expect("send");
    let tags = read_until(&mut stream, b'Z').await;
    assert!(
        tags.contains(&b'D') && tags.contains(&b'C'),
        "row and completion: {tags:?}"
    );
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn random_bytes_never_take_the_server_down() {
    let server = TestServer::start().await;
    let mut rng = rand::rng();
    for round in 0..150 {
        let mut stream = if round % 2 == 0 {
            authenticated(&server).await
        } else {
            TcpStream::connect(server.addr).await.expect("connect")
        };
        let len = rng.random_range(1..512);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if round % 3 == 0 && bytes.len() > 5 {
            // A plausible tag with a random length field.
            bytes[0] = *[b'Q', b'P', b'B', b'E', b'D', b'S', b'X', b'p']
                .get(round % 8)
                .unwrap_or(&b'Q');
        }
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_millis(500), stream.read_to_end(&mut sink)).await;
    }
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_get_53300() {
    let server = TestServer::start_limited(2).await;
    let _a = server.connect().await;
    let _b = server.connect().await;
    let err = match server.connect_as(&server.admin_token).await {
        Ok(_) => panic!("third connection must be refused"),
        Err(err) => err,
    };
    assert_eq!(support::sqlstate(&err), "53300");
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    still_serves(&server).await;
    server.stop().await;
}
