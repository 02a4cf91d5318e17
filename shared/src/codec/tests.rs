//! Golden byte vectors written by hand from venti(7)'s message table, in
//! both framings, and round-trip property tests.

use super::prune::{PruneCommitted, PruneReply, PruneRequest, PruneStatus};
use super::*;
use proptest::prelude::*;

const SCORE_HEX: &str = "a9993e364706816aba3e25717850c26c9cd0d89d"; // SHA-1("abc")

fn score() -> Score {
    SCORE_HEX.parse().unwrap()
}

fn hx(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

/// (message, tag, body bytes in hex: type tag fields...)
fn golden() -> Vec<(Message, u8, Vec<u8>)> {
    vec![
        (
            Message::Rerror { error: "no".into() },
            7,
            hx("01 07 0002 6e6f"),
        ),
        (Message::Tping, 1, hx("02 01")),
        (Message::Rping, 1, hx("03 01")),
        (
            Message::Thello {
                version: "02".into(),
                uid: "anonymous".into(),
                strength: 0,
                crypto: Bytes::new(),
                codec: Bytes::new(),
            },
            0,
            hx("04 00 0002 3032 0009 616e6f6e796d6f7573 00 00 00"),
        ),
        (
            Message::Rhello {
                sid: "anonymous".into(),
                rcrypto: 0,
                rcodec: 0,
            },
            0,
            hx("05 00 0009 616e6f6e796d6f7573 00 00"),
        ),
        (Message::Tgoodbye, 9, hx("06 09")),
        (
            Message::Tread {
                score: score(),
                block_type: BlockType::DATA,
                count: 8192,
            },
            42,
            hx(&format!("0c 2a {SCORE_HEX} 0d 00 2000")),
        ),
        (
            Message::Tread {
                score: score(),
                block_type: BlockType::ROOT,
                count: 0x0001_0000,
            },
            255,
            hx(&format!("0c ff {SCORE_HEX} 01 00 00010000")),
        ),
        (
            Message::Rread {
                data: Bytes::from_static(b"abc"),
            },
            42,
            hx("0d 2a 616263"),
        ),
        (
            Message::Twrite {
                block_type: BlockType::pointer(0).unwrap(),
                data: Bytes::from_static(b"abc"),
            },
            3,
            hx("0e 03 03 000000 616263"),
        ),
        (
            Message::Rwrite { score: score() },
            3,
            hx(&format!("0f 03 {SCORE_HEX}")),
        ),
        (
            Message::Tauth0 {
                key: [0x11; 32],
                signature: [0x22; 64],
            },
            4,
            hx(&format!("08 04 {} {}", "11".repeat(32), "22".repeat(64))),
        ),
        (Message::Rauth0, 4, hx("09 04")),
        (Message::Tsync, 200, hx("10 c8")),
        (Message::Rsync, 200, hx("11 c8")),
        // eventi's extensions.
        (
            Message::Thas {
                keys: vec![(score(), BlockType::DATA), (score(), BlockType::ROOT)],
            },
            5,
            hx(&format!("40 05 0002 {SCORE_HEX} 0d {SCORE_HEX} 01")),
        ),
        (
            Message::Rhas {
                present: vec![true, false, false, true, false, false, false, false, true],
            },
            5,
            hx("41 05 0009 09 01"),
        ),
        (Message::Rhas { present: vec![] }, 5, hx("41 05 0000")),
        (Message::Tkeyinfo, 6, hx("42 06")),
        (
            Message::Rkeyinfo {
                name: "me".into(),
                quota: 1 << 30,
                used: 5,
                blocks: 1,
            },
            6,
            hx("43 06 0002 6d65 0000000040000000 0000000000000005 0000000000000001"),
        ),
        (
            Message::Theadget {
                key: [0x11; 32],
                name: "default".into(),
            },
            7,
            hx(&format!("44 07 {} 0007 64656661756c74", "11".repeat(32))),
        ),
        (Message::Rheadget { head: None }, 7, hx("45 07 00")),
        (
            Message::Rheadget {
                head: Some(crate::head::SignedHead {
                    root: score(),
                    seq: 3,
                    signature: [0x22; 64],
                }),
            },
            7,
            hx(&format!(
                "45 07 01 {SCORE_HEX} 0000000000000003 {}",
                "22".repeat(64)
            )),
        ),
        (
            Message::Theadset {
                name: "d".into(),
                head: crate::head::SignedHead {
                    root: score(),
                    seq: 4,
                    signature: [0x33; 64],
                },
                epoch: None,
            },
            8,
            hx(&format!(
                "46 08 0001 64 {SCORE_HEX} 0000000000000004 {}",
                "33".repeat(64)
            )),
        ),
        (
            Message::Theadset {
                name: "d".into(),
                head: crate::head::SignedHead {
                    root: score(),
                    seq: 4,
                    signature: [0x33; 64],
                },
                epoch: Some(2),
            },
            8,
            hx(&format!(
                "46 08 0001 64 {SCORE_HEX} 0000000000000004 {} 0000000000000002",
                "33".repeat(64)
            )),
        ),
        (Message::Rheadset, 8, hx("47 08")),
        (
            Message::Tprune {
                request: PruneRequest::Status,
            },
            9,
            hx("48 09 00"),
        ),
        (
            Message::Tprune {
                request: PruneRequest::Begin,
            },
            9,
            hx("48 09 01"),
        ),
        (
            Message::Tprune {
                request: PruneRequest::Mark {
                    keys: vec![(score(), BlockType::DATA)],
                },
            },
            9,
            hx(&format!("48 09 02 0001 {SCORE_HEX} 0d")),
        ),
        (
            Message::Tprune {
                request: PruneRequest::Commit {
                    heads: vec![("default".into(), 3)],
                },
            },
            9,
            hx("48 09 03 01 0007 64656661756c74 0000000000000003"),
        ),
        (
            Message::Rprune {
                reply: PruneReply::Status {
                    op: 1,
                    status: PruneStatus {
                        epoch: 2,
                        since: 0x6553f100,
                        reclaimed_bytes: 4096,
                        grace: 86400,
                        heads: vec![("d".into(), 5)],
                    },
                },
            },
            9,
            hx("49 09 01 0000000000000002 000000006553f100 0000000000001000 0000000000015180 01 0001 64 0000000000000005"),
        ),
        (
            Message::Rprune {
                reply: PruneReply::Marked {
                    present: vec![true, false, true],
                },
            },
            9,
            hx("49 09 02 0003 05"),
        ),
        (
            Message::Rprune {
                reply: PruneReply::Committed(PruneCommitted {
                    epoch: 3,
                    released: 4,
                    dead_blocks: 2,
                    dead_bytes: 8192,
                    moved_blocks: 1,
                    moved_bytes: 100,
                }),
            },
            9,
            hx("49 09 03 0000000000000003 0000000000000004 0000000000000002 0000000000002000 0000000000000001 0000000000000064"),
        ),
    ]
}

#[test]
fn presence_queries_over_the_limit_are_refused_both_ways() {
    let keys = vec![(score(), BlockType::DATA); extension::MAX_HAS + 1];
    let mut out = BytesMut::new();
    let err = encode_frame(Version::V04, 1, &Message::Thas { keys }, &mut out).unwrap_err();
    assert_eq!(err, CodecError::TooManyScores(extension::MAX_HAS + 1));
    assert!(out.is_empty());
    // 1025 claimed, and a count that does not match the scores given.
    let err = decode_body(Bytes::from(hx("40 01 0401"))).unwrap_err();
    assert!(matches!(err, CodecError::Malformed { tag: 1, .. }), "{err}");
    let err = decode_body(Bytes::from(hx(&format!("40 01 0002 {SCORE_HEX} 0d")))).unwrap_err();
    assert!(matches!(err, CodecError::Malformed { tag: 1, .. }), "{err}");
    let err = decode_body(Bytes::from(hx("41 01 0009 01"))).unwrap_err();
    assert!(matches!(err, CodecError::Malformed { .. }), "{err}");
}

#[test]
fn golden_vectors_encode_and_decode_in_both_framings() {
    for (message, tag, body) in golden() {
        for version in [Version::V02, Version::V04] {
            let mut expect = match version {
                Version::V02 => (body.len() as u16).to_be_bytes().to_vec(),
                Version::V04 => (body.len() as u32).to_be_bytes().to_vec(),
            };
            expect.extend_from_slice(&body);

            let mut out = BytesMut::new();
            encode_frame(version, tag, &message, &mut out).unwrap();
            assert_eq!(out.as_ref(), &expect[..], "{message:?} {version:?}");

            let mut buf = BytesMut::from(&expect[..]);
            let frame = FrameDecoder::new(version, 1 << 20)
                .decode(&mut buf)
                .unwrap()
                .unwrap();
            assert!(buf.is_empty());
            assert_eq!(
                decode_body(frame).unwrap(),
                Frame {
                    tag,
                    message: message.clone()
                }
            );
        }
    }
}

#[test]
fn decoder_waits_for_whole_frame() {
    let mut buf = BytesMut::from(&hx("0002 02")[..]);
    let dec = FrameDecoder::new(Version::V02, 100);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&[1]);
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap().as_ref(), &[2, 1]);
}

#[test]
fn oversize_frame_is_refused_before_its_body_arrives() {
    let mut buf = BytesMut::from(&hx("00100000")[..]);
    let err = FrameDecoder::new(Version::V04, 65536)
        .decode(&mut buf)
        .unwrap_err();
    assert_eq!(
        err,
        CodecError::FrameTooLarge {
            len: 1 << 20,
            max: 65536
        }
    );
}

#[test]
fn malformed_bodies_keep_their_tag() {
    let cases: Vec<(Vec<u8>, u8)> = vec![
        (hx("0c 05 0011"), 5),                               // Tread too short
        (hx(&format!("0c 06 {SCORE_HEX} 00 00 2000")), 6),   // type 0 is illegal
        (hx(&format!("0c 07 {SCORE_HEX} 0d 00 200000")), 7), // 3-byte count
        (hx("0e 08 0a 000000 00"), 8),                       // type 10 is illegal
        (hx("02 09 00"), 9),                                 // Tping with trailing byte
        (hx("04 0a 0005 3032"), 10),                         // string runs past end
    ];
    for (body, tag) in cases {
        let err = decode_body(Bytes::from(body.clone())).unwrap_err();
        assert_eq!(err.tag(), Some(tag), "{body:02x?} gave {err}");
    }
    let err = decode_body(Bytes::from(hx("63 0b"))).unwrap_err();
    assert_eq!(
        err,
        CodecError::UnknownType {
            msg_type: 0x63,
            tag: 11
        }
    );
    assert_eq!(
        decode_body(Bytes::from(hx("0c"))).unwrap_err(),
        CodecError::Truncated(1)
    );
}

#[test]
fn v02_refuses_messages_over_64k_and_appends_nothing() {
    let mut out = BytesMut::from(&b"keep"[..]);
    let big = Message::Rread {
        data: Bytes::from(vec![0u8; 70_000]),
    };
    assert!(matches!(
        encode_frame(Version::V02, 1, &big, &mut out),
        Err(CodecError::TooLargeForV02(_))
    ));
    assert_eq!(out.as_ref(), b"keep");
    encode_frame(Version::V04, 1, &big, &mut out).unwrap();
}

fn any_block_type() -> impl Strategy<Value = BlockType> {
    prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 7, 8, 9, 13])
        .prop_map(|b| BlockType::from_wire(b).unwrap())
}

fn any_message() -> impl Strategy<Value = Message> {
    let s = "[ -~]{0,40}";
    let bytes = prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
    let score = any::<[u8; 20]>().prop_map(Score);
    prop_oneof![
        s.prop_map(|error| Message::Rerror { error }),
        Just(Message::Tping),
        Just(Message::Rping),
        (s, s, any::<u8>(), bytes.clone(), bytes.clone()).prop_map(
            |(version, uid, strength, crypto, codec)| Message::Thello {
                version,
                uid,
                strength,
                crypto: crypto.slice(..crypto.len().min(255)),
                codec: codec.slice(..codec.len().min(255)),
            }
        ),
        (s, any::<u8>(), any::<u8>()).prop_map(|(sid, rcrypto, rcodec)| Message::Rhello {
            sid,
            rcrypto,
            rcodec
        }),
        Just(Message::Tgoodbye),
        (any::<[u8; 32]>(), prop::collection::vec(any::<u8>(), 64)).prop_map(|(key, sig)| {
            Message::Tauth0 {
                key,
                signature: sig.try_into().unwrap(),
            }
        }),
        Just(Message::Rauth0),
        (score.clone(), any_block_type(), any::<u32>()).prop_map(|(score, block_type, count)| {
            Message::Tread {
                score,
                block_type,
                count,
            }
        }),
        bytes.clone().prop_map(|data| Message::Rread { data }),
        (any_block_type(), bytes)
            .prop_map(|(block_type, data)| Message::Twrite { block_type, data }),
        score.prop_map(|score| Message::Rwrite { score }),
        Just(Message::Tsync),
        Just(Message::Rsync),
        prop::collection::vec((any::<[u8; 20]>().prop_map(Score), any_block_type()), 0..40)
            .prop_map(|keys| Message::Thas { keys }),
        prop::collection::vec(any::<bool>(), 0..40).prop_map(|present| Message::Rhas { present }),
        Just(Message::Tkeyinfo),
        (any::<[u8; 32]>(), s).prop_map(|(key, name)| Message::Theadget { key, name }),
        (
            s,
            any::<[u8; 20]>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 64)
        )
            .prop_map(|(name, root, seq, sig)| Message::Theadset {
                name,
                head: crate::head::SignedHead {
                    root: Score(root),
                    seq,
                    signature: sig.try_into().unwrap(),
                },
                epoch: (seq % 2 == 0).then_some(seq / 2),
            }),
        prop::collection::vec((any::<[u8; 20]>().prop_map(Score), any_block_type()), 0..40)
            .prop_map(|keys| Message::Tprune {
                request: PruneRequest::Mark { keys }
            }),
        prop::collection::vec((s, any::<u64>()), 0..5).prop_map(|heads| Message::Tprune {
            request: PruneRequest::Commit { heads }
        }),
        (
            any::<[u64; 4]>(),
            prop::collection::vec((s, any::<u64>()), 0..5)
        )
            .prop_map(|(n, heads)| Message::Rprune {
                reply: PruneReply::Status {
                    op: (n[0] % 2) as u8,
                    status: PruneStatus {
                        epoch: n[0],
                        since: n[1],
                        reclaimed_bytes: n[2],
                        grace: n[3],
                        heads,
                    },
                },
            }),
        any::<[u64; 6]>().prop_map(|n| Message::Rprune {
            reply: PruneReply::Committed(PruneCommitted {
                epoch: n[0],
                released: n[1],
                dead_blocks: n[2],
                dead_bytes: n[3],
                moved_blocks: n[4],
                moved_bytes: n[5],
            }),
        }),
        Just(Message::Rheadset),
        (s, any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(name, quota, used, blocks)| {
            Message::Rkeyinfo {
                name,
                quota,
                used,
                blocks,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(message in any_message(), tag in any::<u8>(), v4 in any::<bool>()) {
        let version = if v4 { Version::V04 } else { Version::V02 };
        let mut buf = BytesMut::new();
        encode_frame(version, tag, &message, &mut buf).unwrap();
        encode_frame(version, tag.wrapping_add(1), &Message::Tping, &mut buf).unwrap();
        let dec = FrameDecoder::new(version, 1 << 20);
        let first = decode_body(dec.decode(&mut buf).unwrap().unwrap()).unwrap();
        prop_assert_eq!(first, Frame { tag, message });
        let second = decode_body(dec.decode(&mut buf).unwrap().unwrap()).unwrap();
        prop_assert_eq!(second.message, Message::Tping);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_body(Bytes::from(body));
    }
}
