//! The periodic resync that corrects drift: one paced walk over each
//! controller's store, feeding the controller through `reconcile_on`.
//!
//! Not a timer per object (`Action::requeue` after every reconcile): at 10,000
//! objects those timers were the scheduler's largest allocation (see
//! benches/README.md), and objects created together came due together. The
//! walk holds one snapshot of the store's `Arc`s and emits one object every
//! `period / objects` (stretched by [`Context::resync_gap`] when reconciles are
//! slow), so each object is compared about once per period and resyncs never
//! flood the controller; new and changed objects still go first, through their
//! watch events. A snapshot taken at the start of a pass misses objects created
//! during it (their own event reconciled them) and may emit a deleted one (the
//! controller skips objects no longer in its store).

use std::{sync::Arc, time::Duration};

use futures::Stream;
use kube::{
    Resource,
    runtime::reflector::{ObjectRef, Store},
};

use super::{Context, metrics::Kind};

/// Walk state: the pass's snapshot and the next index in it.
struct Walk<K: Resource<DynamicType = ()> + Clone + 'static> {
    snapshot: Vec<Arc<K>>,
    next: usize,
    started: bool,
}

/// Object references to resync, forever: one pass over `store` per `period`,
/// the first a period after the start (the watch's first list has just
/// reconciled everything), with `gap(objects in the pass)` between two.
pub fn walk<K>(
    store: Store<K>,
    period: Duration,
    gap: impl Fn(usize) -> Duration + Send + Sync + 'static,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let start = Walk {
        snapshot: Vec::new(),
        next: 0,
        started: false,
    };
    let gap = Arc::new(gap);
    futures::stream::unfold(start, move |mut walk| {
        let store = store.clone();
        let gap = gap.clone();
        async move {
            while walk.next >= walk.snapshot.len() {
                if !walk.started {
                    tokio::time::sleep(period).await;
                    walk.started = true;
                }
                walk.snapshot = store.state();
                walk.next = 0;
                if walk.snapshot.is_empty() {
                    tokio::time::sleep(period).await;
                }
            }
            tokio::time::sleep(gap(walk.snapshot.len())).await;
            let item = ObjectRef::from_obj(walk.snapshot[walk.next].as_ref());
            walk.next += 1;
            if walk.next == walk.snapshot.len() {
                // Let go of the pass's objects as soon as it is done.
                walk.snapshot = Vec::new();
                walk.next = 0;
            }
            Some((item, walk))
        }
    })
}

/// The walk of one controller's store, paced by the context.
pub fn paced<K>(
    store: Store<K>,
    ctx: Arc<Context>,
    kind: Kind,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let period = ctx.resync;
    walk(store, period, move |objects| ctx.resync_gap(kind, objects))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector, watcher};

    use super::*;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Every object is compared once per period, evenly spread, starting a
    /// period after the operator starts; objects added later join the next pass.
    #[tokio::test]
    async fn each_object_comes_once_per_period_evenly_spread() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        for name in ["a", "b", "c", "d"] {
            writer.apply_watcher_event(&watcher::Event::Apply(cm(name)));
        }
        let period = Duration::from_millis(400);
        let started = tokio::time::Instant::now();
        let mut walk = Box::pin(walk(store, period, move |n| period / n as u32));

        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut first_at = None;
        for _ in 0..4 {
            let r = walk.next().await.expect("a walk never ends");
            first_at.get_or_insert_with(|| started.elapsed());
            *seen.entry(r.name).or_default() += 1;
        }
        let pass = started.elapsed();
        assert!(
            first_at.unwrap() >= period + period / 4,
            "first resync a period (plus one gap) after the start: {first_at:?}"
        );
        assert!(
            pass >= period * 2,
            "the pass is spread over a period: {pass:?}"
        );
        assert_eq!(seen.len(), 4, "each object once: {seen:?}");

        writer.apply_watcher_event(&watcher::Event::Apply(cm("e")));
        let mut next_pass: Vec<String> = Vec::new();
        for _ in 0..5 {
            next_pass.push(walk.next().await.expect("walk").name);
        }
        next_pass.sort();
        assert_eq!(next_pass, ["a", "b", "c", "d", "e"]);
    }
}
