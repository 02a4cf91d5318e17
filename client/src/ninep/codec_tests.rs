//! The 9P codec's golden bytes and property tests.

use crate::ninep::codec::*;
use crate::ninep::messages::*;
use proptest::prelude::*;

#[test]
fn golden_bytes() {
    // Tversion 8192 "9P2000", tag NOTAG: as plan9port's 9p sends it.
    let t = Request {
        tag: NOTAG,
        msg: Tmsg::Version {
            msize: 8192,
            version: "9P2000".into(),
        },
    };
    let bytes = encode_request(&t);
    assert_eq!(
        hex::encode(&bytes),
        "1300000064ffff002000000600395032303030"
    );
    assert_eq!(decode_request(&bytes, false).unwrap(), t);
    // Rwalk of one directory qid (path 2), tag 1.
    let r = Rmsg::Walk {
        qids: vec![Qid {
            kind: QTDIR,
            version: 0,
            path: 2,
        }],
    };
    assert_eq!(
        hex::encode(encode_response(1, &r, false)),
        "160000006f0100010080000000000200000000000000"
    );
    // Rerror "no", tag 7: 9P2000, then 9P2000.u with errno 2.
    let e = Rmsg::Error {
        ename: "no".into(),
        errno: 2,
    };
    assert_eq!(
        hex::encode(encode_response(7, &e, false)),
        "0b0000006b070002006e6f"
    );
    assert_eq!(
        hex::encode(encode_response(7, &e, true)),
        "0f0000006b070002006e6f02000000"
    );
}

#[test]
fn a_stat_counts_its_own_size() {
    let s = Stat {
        qid: Qid {
            kind: 0,
            version: 0,
            path: 9,
        },
        mode: 0o644,
        length: 5,
        name: b"a".to_vec(),
        uid: "u".into(),
        gid: "g".into(),
        ..Stat::default()
    };
    let mut out = Vec::new();
    encode_stat(&s, false, &mut out);
    // 2+4+13+4+4+4+8 fixed, then four strings: 2+1, 2+1, 2+1, 2+0.
    assert_eq!(out.len(), 2 + 39 + 3 + 3 + 3 + 2);
    assert_eq!(u16::from_le_bytes([out[0], out[1]]) as usize, out.len() - 2);
    let mut u = Vec::new();
    encode_stat(&s, true, &mut u);
    assert_eq!(u.len(), out.len() + 2 + 12);
}

#[test]
fn refuses_bad_frames() {
    assert_eq!(decode_request(&[1, 2], false), Err(DecodeError::Truncated));
    // Size field 9, frame of 7 bytes.
    assert_eq!(
        decode_request(&[9, 0, 0, 0, 120, 0, 0], false),
        Err(DecodeError::Size(9))
    );
    assert_eq!(
        decode_request(&[7, 0, 0, 0, 200, 1, 0], false),
        Err(DecodeError::UnknownType(200))
    );
    // A reply's type is not a request.
    assert_eq!(
        decode_request(&[7, 0, 0, 0, 101, 1, 0], false),
        Err(DecodeError::UnknownType(101))
    );
    // Tclunk with a byte too many.
    assert_eq!(
        decode_request(&[12, 0, 0, 0, 120, 1, 0, 5, 0, 0, 0, 9], false),
        Err(DecodeError::Trailing(1))
    );
    let walk = Request {
        tag: 1,
        msg: Tmsg::Walk {
            fid: 0,
            newfid: 1,
            names: vec![b"a".to_vec(); 17],
        },
    };
    assert_eq!(
        decode_request(&encode_request(&walk), false),
        Err(DecodeError::TooManyNames(17))
    );
    assert_eq!(tag_of(&[7, 0, 0, 0, 200, 0x34, 0x12]), Some(0x1234));
    assert_eq!(tag_of(&[7, 0, 0]), None);
}

fn any_request() -> impl Strategy<Value = Request> {
    let name = prop::collection::vec(any::<u8>(), 0..20);
    let text = "[a-z0-9.]{0,12}";
    let msg =
        prop_oneof![
            (any::<u32>(), text).prop_map(|(msize, version)| Tmsg::Version { msize, version }),
            (any::<u32>(), text, text).prop_map(|(afid, uname, aname)| Tmsg::Auth {
                afid,
                uname,
                aname
            }),
            (any::<u32>(), any::<u32>(), text, text).prop_map(|(fid, afid, uname, aname)| {
                Tmsg::Attach {
                    fid,
                    afid,
                    uname,
                    aname,
                }
            }),
            any::<u16>().prop_map(|oldtag| Tmsg::Flush { oldtag }),
            (
                any::<u32>(),
                any::<u32>(),
                prop::collection::vec(name.clone(), 0..=MAXWELEM)
            )
                .prop_map(|(fid, newfid, names)| Tmsg::Walk { fid, newfid, names }),
            (any::<u32>(), any::<u8>()).prop_map(|(fid, mode)| Tmsg::Open { fid, mode }),
            (any::<u32>(), any::<u64>(), any::<u32>())
                .prop_map(|(fid, offset, count)| Tmsg::Read { fid, offset, count }),
            (any::<u32>(), any::<u64>(), name.clone())
                .prop_map(|(fid, offset, data)| Tmsg::Write { fid, offset, data }),
            any::<u32>().prop_map(|fid| Tmsg::Clunk { fid }),
            any::<u32>().prop_map(|fid| Tmsg::Stat { fid }),
            (any::<u32>(), name).prop_map(|(fid, stat)| Tmsg::Wstat { fid, stat }),
        ];
    (any::<u16>(), msg).prop_map(|(tag, msg)| Request { tag, msg })
}

proptest! {
    #[test]
    fn requests_round_trip(req in any_request()) {
        prop_assert_eq!(decode_request(&encode_request(&req), false).unwrap(), req);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), dotu: bool) {
        let _ = decode_request(&bytes, dotu);
        // With a size field that matches, every path past it is tried.
        let mut framed = bytes.clone();
        if framed.len() >= 4 {
            let n = framed.len() as u32;
            framed[..4].copy_from_slice(&n.to_le_bytes());
            let _ = decode_request(&framed, dotu);
        }
    }
}
