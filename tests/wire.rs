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

/// Reads messages until one with a tag in `tags` arrives; returns each message's tag and
/// body.
async fn read_messages_until(stream: &mut TcpStream, tags: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut messages = Vec::new();
    loop {
        let mut header = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut header))
            .await
            .expect("an answer within 10 s")
            .expect("read header");
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        stream.read_exact(&mut body).await.expect("read body");
        messages.push((header[0], body));
        if tags.contains(&header[0]) {
            return messages;
        }
    }
}

/// A DataRow body as text values (the portal asked for text results).
fn data_row_values(body: &[u8]) -> Vec<Option<String>> {
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        at += 4;
        if len < 0 {
            values.push(None);
        } else {
            let end = at + len as usize;
            values.push(Some(
                String::from_utf8(body[at..end].to_vec()).expect("text value"),
            ));
            at = end;
        }
    }
    values
}

/// The tags of `messages`, in order.
fn tags(messages: &[(u8, Vec<u8>)]) -> Vec<u8> {
    messages.iter().map(|(tag, _)| *tag).collect()
}

/// A Parse of `sql` as the unnamed statement, no parameter types given.
fn parse_message(sql: &str) -> Vec<u8> {
    let mut parse = cstring("");
    parse.extend_from_slice(&cstring(sql));
    parse.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &parse)
}

/// A Bind of the unnamed statement to the unnamed portal, without parameters, every result
/// column in text.
fn bind_all_text_message() -> Vec<u8> {
    let mut bind = cstring("");
    bind.extend_from_slice(&cstring(""));
    for count in [0i16, 0, 0] {
        // parameter formats, parameters, result formats (none = all text)
        bind.extend_from_slice(&count.to_be_bytes());
    }
    message(b'B', &bind)
}

/// An Execute of the unnamed portal for at most `max_rows` rows (0 = all).
fn execute_message(max_rows: i32) -> Vec<u8> {
    let mut execute = cstring("");
    execute.extend_from_slice(&max_rows.to_be_bytes());
    message(b'E', &execute)
}

/// Inserts `total` events of type `aggregate_type`, one aggregate each, whose payloads carry
/// `filler_bytes` of filler, in one statement.
async fn seed_filled_events(
    client: &tokio_postgres::Client,
    aggregate_type: &str,
    total: usize,
    filler_bytes: usize,
) {
    let filler = "f".repeat(filler_bytes);
    let rows: Vec<String> = (0..total)
        .map(|n| {
            format!("('{aggregate_type}', '{aggregate_type}-{n}', 'filled', '{{\"filler\":\"{filler}\"}}')")
        })
        .collect();
    support::insert_event_rows(client, &rows).await;
}

/// Parse, Bind (every result column in text), then Executes of `max_rows` (0 = all) until
/// the portal completes; returns the rows and the CommandComplete tag.
async fn extended_text_rows(
    stream: &mut TcpStream,
    sql: &str,
    max_rows: i32,
) -> (Vec<Vec<Option<String>>>, String) {
    let execute = execute_message(max_rows);
    let mut request = parse_message(sql);
    request.extend_from_slice(&bind_all_text_message());
    request.extend_from_slice(&execute);
    request.extend_from_slice(&message(b'H', &[]));
    stream
        .write_all(&request)
        .await
        .expect("parse, bind, execute");
    let mut rows = Vec::new();
    loop {
        // CommandComplete, PortalSuspended or ErrorResponse ends one Execute.
        let messages = read_messages_until(stream, b"CsE").await;
        let done = messages.iter().find(|(tag, _)| *tag == b'C').cloned();
        for (tag, body) in &messages {
            match tag {
                b'D' => rows.push(data_row_values(body)),
                b'E' => panic!("error: {}", String::from_utf8_lossy(body)),
                _ => {}
            }
        }
        if let Some((_, tag)) = done {
            stream.write_all(&message(b'S', &[])).await.expect("sync");
            read_until(stream, b'Z').await;
            let tag = String::from_utf8_lossy(&tag)
                .trim_end_matches('\0')
                .to_owned();
            return (rows, tag);
        }
        // PortalSuspended: ask for the next rows of the same portal.
        stream.write_all(&execute).await.expect("execute again");
        stream.write_all(&message(b'H', &[])).await.expect("flush");
    }
}

/// A portal run to the end with text results answers a whole-history scan a chunk at a time
/// (re-seeking after each chunk); a portal run with a row limit resumes from where it
/// stopped. Either way the rows must be exactly the simple protocol's, across many chunks,
/// with filters, OFFSET and LIMIT.
#[tokio::test]
async fn streamed_and_suspended_text_results_match_the_simple_protocol() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let filler = "y".repeat(500);
    let total = 1_500usize; // ~1 MiB of rows: about sixteen 64 KiB chunks
    for start in (0..total).step_by(250) {
        let rows: Vec<String> = (start..start + 250)
            .map(|n| {
                format!(
                    "('bulk', 's-{}', 'filled', '{{\"n\":{n},\"filler\":\"{filler}\"}}')",
                    n % 7
                )
            })
            .collect();
        support::insert_event_rows(&client, &rows).await;
    }
    let mut stream = authenticated(&server).await;
    let ids: Vec<i64> = support::simple_text_rows(&client, "SELECT event_id FROM events")
        .await
        .iter()
        .map(|row| row[0].as_deref().unwrap_or_default().parse().expect("id"))
        .collect();
    assert_eq!(ids.len(), total);
    // A streamed scan tests only what its event_id bounds do not already hold (the
    // suspended runs below test every predicate on every row), so the bounds must be
    // exactly the comparisons they replace: each operator, negative and text operands,
    // and `<>`, which is no bound.
    let bounded = [
        (
            format!(
                "SELECT event_id FROM events WHERE event_id >= {} AND event_id < {}",
                ids[100], ids[1_200]
            ),
            1_100,
        ),
        (
            format!(
                "SELECT event_id FROM outbox WHERE event_id > {} AND event_id <= {} ORDER BY event_id",
                ids[99], ids[1_199]
            ),
            1_100,
        ),
        (format!("SELECT event_id FROM events WHERE event_id = {}", ids[700]), 1),
        ("SELECT event_id FROM events WHERE event_id > -5".to_owned(), total),
        ("SELECT event_id FROM events WHERE event_id < 0".to_owned(), 0),
        ("SELECT event_id FROM events WHERE event_id <= -1".to_owned(), 0),
        (
            format!(
                "SELECT event_id FROM events WHERE event_id <> {} AND event_id > '{}'",
                ids[500], ids[299]
            ),
            total - 300 - 1,
        ),
    ];
    let queries = [
        (
            "SELECT event_id, aggregate_id, payload FROM events ORDER BY event_id",
            total,
        ),
        (
            "SELECT event_id, payload->>'n' FROM outbox WHERE event_id > 0 \
             ORDER BY event_id LIMIT 1000 OFFSET 7",
            1_000,
        ),
        (
            "SELECT event_id, version FROM events WHERE aggregate_id = 's-3'",
            214,
        ),
        (
            "SELECT event_id FROM events ORDER BY event_id OFFSET 1490",
            10,
        ),
    ];
    let queries = queries
        .into_iter()
        .map(|(sql, expected)| (sql.to_owned(), expected))
        .chain(bounded);
    for (sql, expected) in queries {
        let sql = sql.as_str();
        let simple = support::simple_text_rows(&client, sql).await;
        assert_eq!(simple.len(), expected, "{sql}");
        for max_rows in [0, 333] {
            let (rows, tag) = extended_text_rows(&mut stream, sql, max_rows).await;
            if max_rows == 0 {
                // (After a suspended run, like PostgreSQL, the tag counts the last Execute.)
                assert_eq!(tag, format!("SELECT {}", rows.len()), "{sql}");
            }
            assert!(rows == simple, "{sql} (max_rows {max_rows}) differs");
        }
    }
    still_serves(&server).await;
    server.stop().await;
}

/// Regression: the tail of a result over 8 KiB was written out on its own before its
/// CommandComplete (`feed` asks `poll_ready`, which writes out a buffer over 8 KiB), and
/// ReadyForQuery went out in a write of its own (pgwire's Sync handler does the same): two
/// more writes, and two more wake-ups of the client, for every outbox page. A result under
/// the row-flush bound now waits, whole, for the Sync, and leaves with its CommandComplete
/// and ReadyForQuery.
#[tokio::test]
async fn a_result_waits_for_sync_and_leaves_with_its_ready_for_query() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let total = 100usize; // ~33 KiB of rows: over the 8 KiB that made `feed` write
    seed_filled_events(&client, "tail", total, 300).await;

    let mut stream = authenticated(&server).await;
    // Parsed first on its own: ParseComplete is written when the Parse is answered.
    let mut request =
        parse_message("SELECT event_id, aggregate_id, payload FROM events ORDER BY event_id");
    request.extend_from_slice(&message(b'S', &[]));
    stream.write_all(&request).await.expect("parse");
    let parsed = read_messages_until(&mut stream, b"Z").await;
    assert_eq!(tags(&parsed), b"1Z");
    let mut request = bind_all_text_message();
    request.extend_from_slice(&execute_message(0));
    stream.write_all(&request).await.expect("bind, execute");

    let mut early = [0u8; 1];
    let before_sync =
        tokio::time::timeout(Duration::from_millis(300), stream.read(&mut early)).await;
    assert!(
        before_sync.is_err(),
        "nothing is written before Sync while the result is under the row-flush bound"
    );

    stream.write_all(&message(b'S', &[])).await.expect("sync");
    let messages = read_messages_until(&mut stream, b"Z").await;
    let mut expected = vec![b'2'];
    expected.extend(std::iter::repeat_n(b'D', total));
    expected.extend([b'C', b'Z']);
    assert_eq!(
        tags(&messages),
        expected,
        "every message of the answer, in order"
    );
    still_serves(&server).await;
    server.stop().await;
}

/// The simple protocol's answers, sent by our own `on_query` (rows written out per 64 KiB,
/// ReadyForQuery queued behind them): every message in order, and the transaction status
/// each ReadyForQuery reports, across a result several writes long, an empty query, a
/// transaction, an error inside it and its rollback.
#[tokio::test]
async fn simple_queries_answer_in_order_with_the_transaction_status() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let total = 300usize; // ~160 KiB of rows: three row-flush bounds
    seed_filled_events(&client, "simple", total, 500).await;

    let mut stream = authenticated(&server).await;
    let mut ask = async |sql: &str| -> (Vec<u8>, u8) {
        stream
            .write_all(&message(b'Q', &cstring(sql)))
            .await
            .expect("query");
        let messages = read_messages_until(&mut stream, b"Z").await;
        let status = messages.last().map_or(0, |(_, body)| body[0]);
        (tags(&messages), status)
    };

    let (tags, status) = ask("SELECT event_id, payload FROM events ORDER BY event_id").await;
    let mut expected = vec![b'T'];
    expected.extend(std::iter::repeat_n(b'D', total));
    expected.extend([b'C', b'Z']);
    assert_eq!(
        tags, expected,
        "a result several writes long, whole and in order"
    );
    assert_eq!(status, b'I');

    assert_eq!(ask(" ; ").await, (b"IZ".to_vec(), b'I'), "an empty query");
    assert_eq!(
        ask("BEGIN; SELECT 1").await,
        (b"CTDCZ".to_vec(), b'T'),
        "inside a transaction"
    );
    assert_eq!(
        ask("SELECT * FROM no_such_table").await,
        (b"EZ".to_vec(), b'E'),
        "a failed transaction"
    );
    assert_eq!(ask("ROLLBACK").await, (b"CZ".to_vec(), b'I'), "rolled back");
    still_serves(&server).await;
    server.stop().await;
}
