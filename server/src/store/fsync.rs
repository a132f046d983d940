//! Making sled writes durable without `flush_async`.
//!
//! sled 0.34's `Tree::flush_async` runs the flush on sled's own small
//! thread pool, and several flushes awaited at the same moment can wedge
//! that pool and sled's global concurrency lock for good
//! (spacejam/sled#1241, #1308, #1357; fixed only on sled's unreleased main).
//! A relay's writer, its audit log and its witness each flush, and the demo
//! and the tests run several relays in one process, so it happened: the
//! whole runtime stopped, timers included. [`fsync`] runs the synchronous
//! `Tree::flush` on tokio's blocking pool instead, which has no such limit,
//! then syncs what sled's flush leaves out ([`super::durable`]).

use super::durable::SledFiles;

/// Flushes everything written to `tree`'s database so far and, given the
/// database's `files`, fsyncs them (see [`super::durable`]), on a blocking
/// thread; returns the bytes flushed.
pub async fn fsync(tree: &sled::Tree, files: Option<&SledFiles>) -> sled::Result<usize> {
    let (tree, files) = (tree.clone(), files.cloned());
    let task = move || match files {
        Some(files) => files.flush(&tree),
        None => tree.flush(),
    };
    match tokio::task::spawn_blocking(task).await {
        Ok(flushed) => flushed,
        Err(e) => Err(sled::Error::ReportableBug(format!("the fsync task failed: {e}"))),
    }
}
