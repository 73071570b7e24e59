//! What authentication adds to a request: `cargo bench --bench auth`.
//!
//! The common case is a key verified within the last minute: a SHA-256 of the presented token
//! and a cache lookup. The cold case (first use, or after rotation) runs Argon2id once; the
//! authenticator serialises those so a flood of bad keys cannot occupy every core.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use audittrail::auth::Authenticator;
use audittrail::auth::audit::AuditSink;
use audittrail::auth::keys;
use audittrail::store::{SqliteLocation, Store};

fn bench_auth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(Store::open(
            SqliteLocation {
                path: dir.path().join("bench.db"),
            },
            2,
            1,
        ))
        .expect("store");
    let issued = rt
        .block_on(keys::bootstrap(&store, "bench"))
        .expect("bootstrap");
    let (sink, _rx) = AuditSink::channel(16);
    let auth = Authenticator::new(store.readers.clone(), sink, Vec::new());
    rt.block_on(auth.verify(&issued.key)).expect("valid key");

    c.bench_function("auth: cached key (per request)", |b| {
        b.iter(|| {
            rt.block_on(auth.verify(black_box(&issued.key)))
                .expect("valid key")
        })
    });
    let mut group = c.benchmark_group("auth: first use (argon2id)");
    group.sample_size(10);
    group.bench_function("verify", |b| {
        b.iter(|| {
            auth.evict(&issued.record.id);
            rt.block_on(auth.verify(black_box(&issued.key)))
                .expect("valid key")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_auth);
criterion_main!(benches);
