//! Making sled writes durable without `flush_async`.
//!
//! sled 0.34's `Tree::flush_async` runs the flush on sled's own small
//! thread pool, and several flushes awaited at the same moment can wedge
//! that pool and sled's global concurrency lock for good
//! (spacejam/sled#1241, #1308, #1357; fixed only on sled's unreleased main).
//! A relay's writer, its audit log and its witness each flush, and the demo
//! and the tests run several relays in one process, so it happened: the
//! whole runtime stopped, timers included. [`fsync`] runs the synchronous
//! `Tree::flush` on tokio's blocking pool instead, which has no such limit.

/// Flushes (fsyncs) everything written to `tree`'s database so far, on a
/// blocking thread; returns the bytes flushed.
pub async fn fsync(tree: &sled::Tree) -> sled::Result<usize> {
    let tree = tree.clone();
    match tokio::task::spawn_blocking(move || tree.flush()).await {
        Ok(flushed) => flushed,
        Err(e) => Err(sled::Error::ReportableBug(format!("the fsync task failed: {e}"))),
    }
}
