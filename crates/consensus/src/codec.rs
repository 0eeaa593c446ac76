//! The binary encoding of log entries and Raft requests: one format byte, then postcard.
//!
//! serde_json was the first encoding; it cost the leader most of its CPU under load (every
//! request was encoded for the log, again for each follower, and decoded and encoded again on
//! each follower). postcard encodes enums by variant position, which is why `Command` variants
//! are only ever appended (STYLE P5). A value that starts with `{` is still read as JSON.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// An undecodable (or unencodable) value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

/// The first byte of a postcard-encoded value (format 2: job specs with `--begin`,
/// `--dependency` and `--array`; format 3: job specs with `--oversubscribe`, `--qos`,
/// `--requeue` and the accounting flags, partition updates with `OverSubscribe=`).
const POSTCARD: u8 = 3;

/// The first bytes written by earlier builds, whose entries this build cannot read.
const POSTCARD_OLD: [u8; 2] = [1, 2];

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![POSTCARD];
    postcard::to_io(value, &mut out).map_err(|e| CodecError(e.to_string()))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.first() {
        Some(&POSTCARD) => postcard::from_bytes(&bytes[1..]).map_err(|e| CodecError(e.to_string())),
        Some(b'{') | Some(b'[') | Some(b'"') => {
            serde_json::from_slice(bytes).map_err(|e| CodecError(e.to_string()))
        }
        Some(&old) if POSTCARD_OLD.contains(&old) => Err(CodecError(format!(
            "entry written by an earlier pre-release drover (encoding {old}): this build reads \
             encoding {POSTCARD}; start the cluster from an empty state directory"
        ))),
        Some(other) => Err(CodecError(format!("unknown encoding byte {other:#04x}"))),
        None => Err(CodecError("empty value".to_string())),
    }
}

/// The encoded size of `value`, without allocating.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(1);
    let _ = postcard::to_io(value, &mut count);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_scheduler::{Command, JobSpec, Proposal, Request};

    #[test]
    fn round_trips_and_still_reads_json() {
        let p = Proposal {
            at: 7,
            requests: vec![Request {
                request_id: "r".into(),
                command: Command::Submit(JobSpec::default()),
            }],
        };
        let bytes = encode(&p).unwrap();
        assert_eq!(bytes[0], POSTCARD);
        assert_eq!(encoded_len(&p), bytes.len());
        assert_eq!(decode::<Proposal>(&bytes).unwrap(), p);
        assert_eq!(
            decode::<Proposal>(&serde_json::to_vec(&p).unwrap()).unwrap(),
            p
        );
        assert!(decode::<Proposal>(&[9, 9]).is_err());
        for byte in POSTCARD_OLD {
            let old = decode::<Proposal>(&[byte, 0]).unwrap_err().to_string();
            assert!(old.contains("empty state directory"), "{old}");
            assert!(old.contains(&format!("encoding {byte}")), "{old}");
        }
        assert!(decode::<Proposal>(&[]).is_err());
        assert!(decode::<Proposal>(&[POSTCARD, 0xff]).is_err());
    }

    /// `Command::CompleteAllocation` is variant 20 (appended after `EndStep`): its bytes are
    /// pinned, so a reordering of `Command` shows here.
    #[test]
    fn complete_allocation_encoding_is_pinned() {
        let p = Proposal {
            at: 7,
            requests: vec![Request {
                request_id: "r".into(),
                command: Command::CompleteAllocation {
                    job_id: drover_scheduler::JobId(5),
                    uid: 1000,
                    exit_code: 1,
                    signal: 0,
                },
            }],
        };
        let bytes = encode(&p).unwrap();
        assert_eq!(bytes, [POSTCARD, 7, 1, 1, b'r', 20, 5, 0xe8, 0x07, 2, 0]);
        assert_eq!(decode::<Proposal>(&bytes).unwrap(), p);
    }

    /// `Command::RunReport` is variant 21, wrapping a node's report (here `JobStarted`,
    /// variant 5) about run 2.
    #[test]
    fn run_report_encoding_is_pinned() {
        let p = Proposal {
            at: 7,
            requests: vec![Request {
                request_id: "r".into(),
                command: Command::RunReport {
                    restarts: 2,
                    report: Box::new(Command::JobStarted {
                        job_id: drover_scheduler::JobId(5),
                        node: "n1".into(),
                        pid: 9,
                    }),
                },
            }],
        };
        let bytes = encode(&p).unwrap();
        assert_eq!(
            bytes,
            [POSTCARD, 7, 1, 1, b'r', 21, 2, 5, 5, 2, b'n', b'1', 9]
        );
        assert_eq!(decode::<Proposal>(&bytes).unwrap(), p);
    }
}
