//! The io_uring shard.

use super::ShardCtx;

pub fn run(ctx: ShardCtx) -> std::io::Result<()> {
    super::epoll::run(ctx)
}
