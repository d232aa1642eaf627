//! The session driven without sockets: literal RFC 6455 bytes through an in-memory wire and a
//! hand-moved clock, so every frame-level rule, timer and bound is checked in milliseconds.

use std::time::Duration;

use tungstenite::Bytes;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use super::{Event, Outgoing, Session, SessionConfig};
use crate::clock::Clock;
use crate::error::{Error, ReceiveFailure, SendFailure};
use crate::wire::memory::MemWire;

fn open(config: SessionConfig) -> (Session<MemWire>, MemWire, Clock) {
    let clock = Clock::manual();
    let wire = MemWire::new(clock.clone());
    let session = Session::with_clock(wire.clone(), Vec::new(), config, clock.clone());
    (session, wire, clock)
}

/// A frame as a server sends it (unmasked): first byte (FIN, RSV, opcode), then the payload.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    match payload.len() {
        n if n < 126 => v.push(n as u8),
        n if n <= 0xffff => {
            v.push(126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(payload);
    v
}

/// The frames we wrote, as (first byte, unmasked payload); each must carry a mask (§5.3)
/// exactly when `masked`.
fn frames_written(bytes: &[u8], masked: bool) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let first = bytes[i];
        assert_eq!(bytes[i + 1] & 0x80 != 0, masked, "mask bit of frame at {i}");
        let mut len = (bytes[i + 1] & 0x7f) as usize;
        i += 2;
        if len == 126 {
            len = u16::from_be_bytes([bytes[i], bytes[i + 1]]) as usize;
            i += 2;
        } else if len == 127 {
            len = u64::from_be_bytes(bytes[i..i + 8].try_into().unwrap()) as usize;
            i += 8;
        }
        let key = if masked {
            let k = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
            i += 4;
            k
        } else {
            [0; 4]
        };
        let payload = bytes[i..i + len]
            .iter()
            .enumerate()
            .map(|(j, b)| b ^ key[j % 4])
            .collect();
        i += len;
        out.push((first, payload));
    }
    out
}

fn written(wire: &MemWire) -> Vec<(u8, Vec<u8>)> {
    frames_written(&wire.take_output(), true)
}

fn close_body(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason);
    v
}

/// The next event's text, if it is a text message.
fn text(s: &mut Session<MemWire>) -> Option<Vec<u8>> {
    match s.next_event() {
        Event::Message { text: true } => Some(s.message().to_vec()),
        _ => None,
    }
}

fn failure(e: &Event) -> Option<&Error> {
    match e {
        Event::Failed(err) => Some(err),
        _ => None,
    }
}

#[test]
fn rfc_5_7_a_single_frame_unmasked_text() {
    let (mut s, wire, _) = open(SessionConfig::default());
    wire.push(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(text(&mut s), Some(b"Hello".to_vec()));
    assert!(matches!(s.next_event(), Event::Idle));
}

#[test]
fn rfc_5_7_a_fragmented_unmasked_text() {
    let (mut s, wire, _) = open(SessionConfig::default());
    wire.push(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
    wire.push(&[0x80, 0x02, 0x6c, 0x6f]);
    assert_eq!(text(&mut s), Some(b"Hello".to_vec()));
}

#[test]
fn rfc_5_7_an_unmasked_ping_is_answered_with_a_masked_pong_of_its_payload() {
    let (mut s, wire, _) = open(SessionConfig::default());
    wire.push(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert!(matches!(s.next_event(), Event::Ping(p) if p.as_ref() == b"Hello"));
    assert!(matches!(s.next_event(), Event::Idle));
    assert_eq!(written(&wire), vec![(0x8a, b"Hello".to_vec())]);
}

#[test]
fn rfc_5_7_binary_messages_with_16_and_64_bit_lengths() {
    let config = SessionConfig {
        max_payload_size: 1 << 20,
        ..SessionConfig::default()
    };
    let (mut s, wire, _) = open(config);
    let small: Vec<u8> = (0..256).map(|i| i as u8).collect();
    let big = vec![0x5a; 65536];
    // RFC 6455 §5.7: 0x82 0x7E 0x0100 and 0x82 0x7F 0x0000000000010000.
    assert_eq!(frame(0x82, &small)[..4], [0x82, 0x7e, 0x01, 0x00]);
    assert_eq!(
        frame(0x82, &big)[..10],
        [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]
    );
    wire.push(&frame(0x82, &small));
    wire.push(&frame(0x82, &big));
    let mut got = Vec::new();
    for _ in 0..10 {
        match s.next_event() {
            Event::Message { text: false } => got.push(s.message().to_vec()),
            Event::Paused => {
                s.begin_receive();
            }
            Event::Idle => break,
            other => panic!("unexpected {other:?}"),
        };
    }
    assert_eq!(got, vec![small, big]);
}

#[test]
fn a_peer_close_is_echoed_with_its_code_and_ends_the_connection() {
    let (mut s, wire, _) = open(SessionConfig::default());
    wire.push(&frame(0x88, &close_body(1000, b"bye")));
    match s.next_event() {
        Event::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 1000);
            assert_eq!(f.reason.as_str(), "bye");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(written(&wire), vec![(0x88, close_body(1000, b"bye"))]);
    assert!(!s.is_connected() && !s.is_draining());
    assert_eq!(s.raw_fd(), -1);
    assert!(matches!(
        s.next_event(),
        Event::Ended(Error::Receive(ReceiveFailure::Closed))
    ));
    assert_eq!(
        s.send(Outgoing::Text(Bytes::from_static(b"x"))),
        Err(Error::Closing)
    );
}

#[test]
fn a_ping_between_fragments_is_answered_and_the_message_is_whole() {
    let (mut s, wire, _) = open(SessionConfig::default());
    wire.push(&frame(0x01, b"Hel"));
    wire.push(&frame(0x89, b"p"));
    wire.push(&frame(0x80, b"lo"));
    assert!(matches!(s.next_event(), Event::Ping(p) if p.as_ref() == b"p"));
    assert_eq!(text(&mut s), Some(b"Hello".to_vec()));
    assert_eq!(written(&wire), vec![(0x8a, b"p".to_vec())]);
}

#[test]
fn a_message_over_max_payload_size_fails_with_1009_before_its_payload_arrives() {
    let config = SessionConfig {
        max_payload_size: 10,
        ..SessionConfig::default()
    };
    let (mut s, wire, _) = open(config);
    // Only the header: the length alone condemns it.
    wire.push(&[0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(
        failure(&s.next_event()),
        Some(&Error::Receive(ReceiveFailure::TooBig {
            size: 1 << 32,
            max: 10
        }))
    );
    assert_eq!(written(&wire), vec![(0x88, close_body(1009, b""))]);
}

#[test]
fn invalid_utf8_in_a_text_message_fails_with_1007() {
    let (mut s, wire, _) = open(SessionConfig::default());
    wire.push(&frame(0x81, b"\xff\xfe"));
    assert_eq!(
        failure(&s.next_event()),
        Some(&Error::Receive(ReceiveFailure::InvalidUtf8))
    );
    assert_eq!(written(&wire), vec![(0x88, close_body(1007, b""))]);
}

#[test]
fn a_close_code_that_may_not_be_sent_is_a_protocol_error() {
    let (mut s, wire, _) = open(SessionConfig::default());
    // 1005 is reserved for "no status" (RFC 6455 §7.4.1).
    wire.push(&frame(0x88, &close_body(1005, b"")));
    assert_eq!(
        failure(&s.next_event()),
        Some(&Error::Receive(ReceiveFailure::Protocol(
            "invalid close code"
        )))
    );
    let echo = written(&wire);
    assert_eq!(echo.len(), 1);
    assert_eq!(echo[0].1[..2], 1002u16.to_be_bytes());
}

#[test]
fn the_read_budget_pauses_a_call_and_the_next_call_goes_on() {
    let config = SessionConfig {
        receive_budget: 8,
        chunk_size: 16,
        ..SessionConfig::default()
    };
    let (mut s, wire, _) = open(config);
    wire.push(&frame(0x81, b"first!"));
    wire.push(&frame(0x81, b"second"));
    s.begin_receive();
    assert_eq!(text(&mut s), Some(b"first!".to_vec()));
    assert!(matches!(s.next_event(), Event::Paused));
    assert!(s.dirty());
    s.begin_receive();
    assert_eq!(text(&mut s), Some(b"second".to_vec()));
}

#[test]
fn keepalive_pings_after_silence_then_fails_when_nothing_answers() {
    let config = SessionConfig {
        keepalive: Some(Duration::from_secs(10)),
        ..SessionConfig::default()
    };
    let (mut s, wire, clock) = open(config);
    clock.advance(Duration::from_secs(9));
    assert!(matches!(s.next_event(), Event::Idle));
    assert!(wire.take_output().is_empty());
    clock.advance(Duration::from_secs(1));
    assert!(matches!(s.next_event(), Event::Idle));
    assert_eq!(written(&wire), vec![(0x89, b"luws-keepalive".to_vec())]);
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        failure(&s.next_event()),
        Some(&Error::Receive(ReceiveFailure::KeepaliveTimeout))
    );
    assert_eq!(written(&wire), vec![(0x88, close_body(1001, b""))]);
}

#[test]
fn any_byte_counts_as_life_for_the_receive_timeout() {
    let config = SessionConfig {
        receive_timeout: Some(Duration::from_secs(5)),
        ..SessionConfig::default()
    };
    let (mut s, wire, clock) = open(config);
    let message = frame(0x81, b"slow");
    for b in &message[..message.len() - 1] {
        clock.advance(Duration::from_secs(4));
        wire.push(&[*b]);
        assert!(matches!(s.next_event(), Event::Idle));
    }
    wire.push(&message[message.len() - 1..]);
    assert_eq!(text(&mut s), Some(b"slow".to_vec()));
    clock.advance(Duration::from_secs(5));
    assert_eq!(failure(&s.next_event()), Some(&Error::MessageTimeout));
}

#[test]
fn after_our_close_data_sends_answer_closing_and_the_peer_answer_ends_it() {
    let (mut s, wire, _) = open(SessionConfig::default());
    s.begin_close(CloseCode::Normal).unwrap();
    assert_eq!(written(&wire), vec![(0x88, close_body(1000, b""))]);
    assert!(!s.is_open() && s.is_connected());
    assert_eq!(
        s.send(Outgoing::Text(Bytes::from_static(b"x"))),
        Err(Error::Closing)
    );
    wire.push(&frame(0x88, &close_body(1000, b"")));
    assert!(matches!(s.next_event(), Event::Close(Some(_))));
    assert!(!s.is_connected() && !s.is_draining());
    // The handshake was ours: nothing is echoed.
    assert!(wire.take_output().is_empty());
}

/// A session whose socket takes nothing, with a message queued, receiving the peer's Close.
fn closed_while_send_side_full(close_timeout: Duration) -> (Session<MemWire>, MemWire, Clock) {
    let config = SessionConfig {
        sends_wait: false,
        close_timeout,
        ..SessionConfig::default()
    };
    let (mut s, wire, clock) = open(config);
    wire.set_room(Some(0));
    s.send(Outgoing::Binary(Bytes::from(vec![1; 1000])))
        .unwrap();
    wire.push(&frame(0x88, &close_body(1000, b"")));
    (s, wire, clock)
}

#[test]
fn a_peer_close_while_our_send_side_is_full_drains_over_later_calls() {
    let (mut s, wire, clock) = closed_while_send_side_full(Duration::from_secs(10));
    // Reported at once, without waiting for the echo to go out.
    assert!(matches!(s.next_event(), Event::Close(Some(_))));
    assert!(s.is_draining() && !s.is_connected());
    assert!(matches!(s.next_event(), Event::Ended(_)));
    clock.advance(Duration::from_secs(1));
    assert!(s.is_draining());
    wire.set_room(None);
    assert!(matches!(s.next_event(), Event::Ended(_)));
    assert!(!s.is_draining());
    let out = written(&wire);
    assert_eq!(out.last(), Some(&(0x88, close_body(1000, b""))));
}

#[test]
fn a_drain_that_cannot_finish_gives_up_after_close_timeout() {
    let (mut s, _wire, clock) = closed_while_send_side_full(Duration::from_secs(2));
    assert!(matches!(s.next_event(), Event::Close(_)));
    clock.advance(Duration::from_millis(1999));
    let _ = s.next_event();
    assert!(s.is_draining());
    clock.advance(Duration::from_millis(1));
    assert!(matches!(s.next_event(), Event::Ended(_)));
    assert!(!s.is_draining());
}

#[test]
fn automatic_pongs_to_a_peer_that_never_reads_stay_within_the_cap() {
    let config = SessionConfig {
        send_buffer: 4096,
        send_timeout: Duration::from_secs(60),
        ..SessionConfig::default()
    };
    let (mut s, wire, _) = open(config);
    wire.set_room(Some(0));
    let ping = frame(0x89, &[b'p'; 125]);
    for _ in 0..20_000 {
        wire.push(&ping);
        assert!(matches!(s.next_event(), Event::Ping(_)));
    }
    wire.set_room(None);
    assert!(matches!(s.next_event(), Event::Idle));
    let pongs = written(&wire);
    // At most the cap's worth (131-byte frames) plus the one newest pong waiting beside it.
    assert!(pongs.len() <= 4096 / 131 + 1, "{} pongs", pongs.len());
    assert!(pongs.iter().all(|(op, p)| *op == 0x8a && p.len() == 125));
}

#[test]
fn output_that_makes_no_progress_for_send_timeout_fails_the_connection() {
    let config = SessionConfig {
        send_timeout: Duration::from_secs(3),
        ..SessionConfig::default()
    };
    let (mut s, wire, clock) = open(config);
    wire.set_room(Some(0));
    wire.push(&frame(0x89, b"p"));
    assert!(matches!(s.next_event(), Event::Ping(_)));
    assert!(matches!(s.next_event(), Event::Idle));
    clock.advance(Duration::from_secs(2));
    // Some progress restarts the clock: a slow reader is not a stuck one.
    wire.set_room(Some(1));
    assert!(matches!(s.next_event(), Event::Idle));
    clock.advance(Duration::from_secs(2));
    assert!(matches!(s.next_event(), Event::Idle));
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        failure(&s.next_event()),
        Some(&Error::Send(SendFailure::Timeout))
    );
    assert!(!s.is_connected());
}

#[test]
fn a_send_over_the_cap_is_refused_and_the_connection_stays_open() {
    let config = SessionConfig {
        sends_wait: false,
        send_buffer: 4096,
        ..SessionConfig::default()
    };
    let (mut s, wire, _) = open(config);
    wire.set_room(Some(0));
    // Nothing pending: taken whatever its size.
    s.send(Outgoing::Binary(Bytes::from(vec![7; 10_000])))
        .unwrap();
    assert_eq!(
        s.send(Outgoing::Binary(Bytes::from(vec![8; 100]))),
        Err(Error::Send(SendFailure::BufferFull))
    );
    assert!(s.is_open());
    wire.set_room(None);
    assert!(matches!(s.next_event(), Event::Idle));
    s.send(Outgoing::Binary(Bytes::from(vec![9; 100]))).unwrap();
    let out = written(&wire);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1, vec![7; 10_000]);
    assert_eq!(out[1].1, vec![9; 100]);
}

#[test]
fn with_masking_off_frames_go_out_unmasked() {
    let config = SessionConfig {
        masking: false,
        ..SessionConfig::default()
    };
    let (mut s, wire, _) = open(config);
    s.send(Outgoing::Text(Bytes::from_static(b"Hello")))
        .unwrap();
    assert_eq!(
        wire.take_output(),
        vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    wire.push(&frame(0x89, b"x"));
    assert!(matches!(s.next_event(), Event::Ping(_)));
    assert!(matches!(s.next_event(), Event::Idle));
    assert_eq!(
        frames_written(&wire.take_output(), false),
        vec![(0x8a, b"x".to_vec())]
    );
}

#[test]
fn a_reset_mid_frame_is_a_clean_closed_without_a_close_frame() {
    let (mut s, wire, _) = open(SessionConfig::default());
    wire.push(&[0x81, 0x05, 0x48]);
    assert!(matches!(s.next_event(), Event::Idle));
    wire.state.borrow_mut().reset = true;
    assert_eq!(
        failure(&s.next_event()),
        Some(&Error::Receive(ReceiveFailure::Closed))
    );
    assert!(wire.take_output().is_empty());
}

#[test]
fn wsclose_waits_for_the_peer_close_at_most_close_timeout() {
    let config = SessionConfig {
        close_timeout: Duration::from_secs(3),
        ..SessionConfig::default()
    };
    let (mut s, wire, clock) = open(config);
    let before = clock.now();
    s.close(1000);
    assert_eq!(written(&wire), vec![(0x88, close_body(1000, b""))]);
    assert!(!s.is_connected());
    assert_eq!(clock.now() - before, Duration::from_secs(3));
    // Closing twice is harmless.
    s.close(1000);
    let _ = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
}

#[test]
fn frames_that_break_rfc_6455_fail_with_1002_and_say_which_rule() {
    let cases: [(&str, Vec<u8>, &str); 8] = [
        // RFC 6455 §5.7's masked "Hello": a server must not mask.
        (
            "masked frame",
            vec![
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
            "masked frame from server",
        ),
        // §5.2: the most significant bit of a 64-bit length must be 0.
        (
            "64-bit length, top bit set",
            vec![0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1],
            "invalid frame length",
        ),
        ("reserved bit", frame(0xc1, b"rsv"), "reserved bits set"),
        ("opcode 3", frame(0x83, b"x"), "unknown opcode"),
        (
            "fragmented ping",
            frame(0x09, b"p"),
            "fragmented control frame",
        ),
        (
            "126-byte ping",
            frame(0x89, &[0; 126]),
            "control frame too big",
        ),
        (
            "continuation first",
            frame(0x80, b"x"),
            "continuation frame without a message",
        ),
        (
            "text inside a text",
            [frame(0x01, b"a"), frame(0x81, b"b")].concat(),
            "new message inside a fragmented one",
        ),
    ];
    for (name, bytes, words) in cases {
        let (mut s, wire, _) = open(SessionConfig::default());
        wire.push(&bytes);
        assert_eq!(
            failure(&s.next_event()),
            Some(&Error::Receive(ReceiveFailure::Protocol(words))),
            "{name}"
        );
        assert_eq!(
            written(&wire),
            vec![(0x88, close_body(1002, b""))],
            "{name}"
        );
        assert!(!s.is_connected(), "{name}");
    }
}

#[test]
fn send_data_answers_as_send_does_from_borrowed_bytes() {
    let config = SessionConfig {
        sends_wait: false,
        send_buffer: 4096,
        ..SessionConfig::default()
    };
    let (mut s, wire, _) = open(config);
    // Straight from the caller's bytes when nothing is queued.
    s.send_data(true, b"hi").unwrap();
    s.send_data(false, &[0xff, 0]).unwrap();
    assert_eq!(
        written(&wire),
        vec![(0x81, b"hi".to_vec()), (0x82, vec![0xff, 0])]
    );
    assert_eq!(
        s.send_data(true, &[b'a', 0xff]),
        Err(Error::Send(SendFailure::InvalidUtf8))
    );
    assert!(wire.take_output().is_empty() && s.is_open());
    // A frame the socket takes only in part: the rest waits, and what follows is copied,
    // capped, and goes out after it, each frame whole.
    wire.set_room(Some(5));
    s.send_data(false, &[7; 10_000]).unwrap();
    wire.set_room(Some(0));
    assert_eq!(
        s.send_data(false, &[8; 100]),
        Err(Error::Send(SendFailure::BufferFull))
    );
    wire.set_room(None);
    s.send_data(true, b"after").unwrap();
    let out = written(&wire);
    assert_eq!(
        out.iter()
            .map(|(first, p)| (*first, p.len()))
            .collect::<Vec<_>>(),
        vec![(0x82, 10_000), (0x81, 5)]
    );
    assert_eq!((out[0].1[9_999], out[1].1.as_slice()), (7, &b"after"[..]));
    s.begin_close(CloseCode::Normal).unwrap();
    assert_eq!(s.send_data(true, b"x"), Err(Error::Closing));
}

#[test]
fn send_data_left_in_part_starts_the_stall_clock() {
    let config = SessionConfig {
        sends_wait: false,
        send_timeout: Duration::from_secs(3),
        ..SessionConfig::default()
    };
    let (mut s, wire, clock) = open(config);
    wire.set_room(Some(5));
    s.send_data(false, &[7; 100]).unwrap();
    // The clock runs from the send that left output behind, not from the next call.
    wire.set_room(Some(0));
    clock.advance(Duration::from_secs(3));
    assert_eq!(
        failure(&s.next_event()),
        Some(&Error::Send(SendFailure::Timeout))
    );
}
