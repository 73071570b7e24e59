//! What authentication adds to a request: `cargo bench --bench auth`.
//!
//! The common case is a key verified within the last minute: a SHA-256 of the presented token
//! and a cache lookup. The cold case (first use, or after rotation) runs Argon2id once; the
//! authenticator serialises those so a flood of bad keys cannot occupy every core.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use audittrail::auth::Authenticator;
use audittrail::auth::audit::AuditSink;
use audittrail::store::{Location, PoolSizes, Store, keys};

fn bench_auth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(Store::open(
            Location::Sqlite(dir.path().join("bench.db")),
            PoolSizes {
                readers: 2,
                jobs: 1,
                acquire_timeout: std::time::Duration::from_secs(5),
            },
        ))
        .expect("store");
    let issued = rt
        .block_on(keys::bootstrap(&store, "bench"))
        .expect("bootstrap");
    let (sink, _rx) = AuditSink::channel(16);
    let auth = Authenticator::new(std::sync::Arc::new(store.clone()), sink, Vec::new());
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
