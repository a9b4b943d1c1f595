//! The writer: resume, durability, crash recovery, rotation, failing closed.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use qmeta_audit::{verify, verify_file, verify_rotated, AuditError, AuditLog, AuditOptions, Record};

fn refused(i: u64) -> Record {
    Record::ConnectionRefused { conn_id: i, backend: Some("app-1".into()), reason: "no key".into() }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn conn_ids(path: &Path) -> Vec<u64> {
    read_lines(path)
        .iter()
        .filter_map(|l| match serde_json::from_str::<Record>(l).ok()? {
            Record::ConnectionRefused { conn_id, .. } => Some(conn_id),
            _ => None,
        })
        .collect()
}

#[test]
fn reopening_resumes_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    {
        let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
        for i in 0..5 {
            log.record(refused(i)).unwrap();
        }
        // Dropping the last handle drains the queue and fsyncs.
    }
    let first = verify_file(&path).unwrap();
    assert_eq!(first.records, 5);
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    assert_eq!(log.head(), first.head);
    for i in 5..8 {
        log.record(refused(i)).unwrap();
    }
    log.flush().unwrap();
    let all = verify_file(&path).unwrap();
    assert_eq!(all.records, 8);
    assert_eq!(all.head.seq, 8);
    assert_eq!(all.head, log.head());
    assert_eq!(conn_ids(&path), (0..8).collect::<Vec<_>>());
}

#[test]
fn clones_share_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    log.record(refused(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(log);
    let s = verify_file(&path).unwrap();
    assert_eq!(s.records, 1000);
    let mut ids = conn_ids(&path);
    ids.sort_unstable();
    let want: Vec<u64> = (0..4).flat_map(|t| (0..250).map(move |i| t * 1000 + i)).collect();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn durable_record_is_in_the_file_when_it_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // A long interval: only the durable request can explain the fsync.
    let opts = AuditOptions { fsync_interval: Duration::from_secs(3600), ..AuditOptions::default() };
    let log = AuditLog::open(&path, opts).unwrap();
    log.record(refused(1)).unwrap();
    log.record_durable(Record::Dmcp {
        peer: "127.0.0.1:9".into(),
        sender: "app-1".into(),
        key_id: Some("k1".into()),
        seq: Some(77),
        command: "RESET".into(),
        accepted: true,
        reason: None,
        state_version: Some(3),
        drawn: None,
    })
    .await
    .unwrap();
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains("\"event\":\"dmcp\""), "{}", lines[1]);
    assert!(lines[1].contains("\"dmcp_seq\":77"), "{}", lines[1]);
    assert_eq!(log.head().seq, 2);
}

#[test]
fn torn_tail_is_truncated_and_recorded_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    {
        let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
        for i in 0..3 {
            log.record(refused(i)).unwrap();
        }
    }
    let good = std::fs::read(&path).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    let torn = b"{\"seq\":4,\"ts\":\"2024-";
    f.write_all(torn).unwrap();
    drop(f);
    assert!(verify_file(&path).unwrap_err().reason.contains("torn"));

    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    log.record(refused(9)).unwrap();
    log.flush().unwrap();
    let s = verify_file(&path).unwrap();
    assert_eq!(s.records, 5);
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(&good));
    let lines = read_lines(&path);
    let recovered: Record = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(
        recovered,
        Record::Lifecycle {
            component: "audit".into(),
            what: format!("truncated a torn final line ({} bytes) on open", torn.len())
        }
    );
}

#[test]
fn corrupt_last_line_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    {
        let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
        log.record(refused(0)).unwrap();
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":2,\"garbage\":true}\n").unwrap();
    drop(f);
    let before = std::fs::read(&path).unwrap();
    match AuditLog::open(&path, AuditOptions::default()) {
        Err(AuditError::Corrupt { reason, .. }) => {
            assert!(reason.starts_with("last line: "), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn rotation_links_parts_into_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let opts = AuditOptions { max_file_bytes: 1000, ..AuditOptions::default() };
    let log = AuditLog::open(&path, opts).unwrap();
    for i in 0..40 {
        log.record(refused(i)).unwrap();
        // Flushing each record makes batch boundaries (and so rotation
        // points) deterministic.
        log.flush().unwrap();
    }
    let head = log.head();
    drop(log);

    let mut parts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("audit.log."))
        .collect();
    parts.sort();
    assert!(parts.len() >= 3, "{parts:?}");
    assert!(parts.iter().all(|p| p.len() == "audit.log.".len() + 20));

    let s = verify_rotated(&path).unwrap();
    let rotated_records = parts.len() as u64;
    assert_eq!(s.records, 40 + rotated_records);
    assert_eq!(s.head, head);

    // Each part after the first opens with a rotated record naming the one
    // before; the live file names the newest part.
    let live = read_lines(&path);
    let first: Record = serde_json::from_str(&live[0]).unwrap();
    assert_eq!(first, Record::Rotated { previous_file: parts.last().unwrap().clone() });
    // Concatenated in order, the parts are one stream for `verify`.
    let mut all = Vec::new();
    for p in &parts {
        all.extend(std::fs::read(dir.path().join(p)).unwrap());
    }
    all.extend(std::fs::read(&path).unwrap());
    assert_eq!(verify(&all[..]).unwrap(), s);
    // Every record survived, in order.
    let mut ids = Vec::new();
    for p in &parts {
        ids.extend(conn_ids(&dir.path().join(p)));
    }
    ids.extend(conn_ids(&path));
    assert_eq!(ids, (0..40).collect::<Vec<_>>());
}

#[test]
fn missing_middle_part_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let opts = AuditOptions { max_file_bytes: 600, ..AuditOptions::default() };
    let log = AuditLog::open(&path, opts).unwrap();
    for i in 0..30 {
        log.record(refused(i)).unwrap();
        log.flush().unwrap();
    }
    drop(log);
    let mut parts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &path && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    parts.sort();
    assert!(parts.len() >= 3);
    // A missing middle part breaks the chain at the part after it...
    std::fs::remove_file(&parts[1]).unwrap();
    let e = verify_rotated(&path).unwrap_err();
    assert_eq!(e.file, parts[2]);
    assert_eq!(e.error.line, 1);
    // ...while missing oldest parts (retention) do not.
    std::fs::remove_file(&parts[0]).unwrap();
    assert!(verify_rotated(&path).is_ok());
}

#[test]
fn interrupted_rotation_is_completed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let opts = AuditOptions { max_file_bytes: 300, ..AuditOptions::default() };
    {
        let log = AuditLog::open(&path, opts.clone()).unwrap();
        for i in 0..3 {
            log.record(refused(i)).unwrap();
            log.flush().unwrap();
        }
    }
    // Simulate a crash between the two renames: the live file is gone and
    // the prepared part waits under `.next`.
    let next = dir.path().join("audit.log.next");
    std::fs::rename(&path, &next).unwrap();
    let log = AuditLog::open(&path, opts).unwrap();
    assert!(!next.exists());
    log.record(refused(3)).unwrap();
    log.flush().unwrap();
    drop(log);
    let s = verify_rotated(&path).unwrap();
    assert_eq!(s.head.seq, s.records);
}

#[tokio::test]
async fn writer_failure_closes_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // The first rotation (after seq 1) will find its target taken.
    std::fs::write(dir.path().join("audit.log.00000000000000000001"), b"").unwrap();
    let opts = AuditOptions { max_file_bytes: 1, ..AuditOptions::default() };
    let log = AuditLog::open(&path, opts).unwrap();
    // Durable: written and synced before the rotation that fails.
    log.record_durable(refused(0)).await.unwrap();
    assert!(matches!(log.flush(), Err(AuditError::WriterStopped)));
    assert!(matches!(log.record(refused(1)), Err(AuditError::WriterStopped)));
    assert_eq!(verify_file(&path).unwrap().records, 1);
}

#[test]
fn a_second_writer_on_the_same_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let first = AuditLog::open(&path, AuditOptions::default()).unwrap();
    let err = AuditLog::open(&path, AuditOptions::default()).expect_err("two writers on one chain");
    assert!(err.to_string().contains("in use by another process"), "{err}");
    drop(first);
    AuditLog::open(&path, AuditOptions::default()).expect("free again once the first writer is gone");
}
