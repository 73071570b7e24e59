//! The chain's authenticated state in the database: where the writer continues (the head) and
//! the head checkpoint row it keeps up to date in every commit.
//!
//! At start-up the writer continues from the log's last record, unless the authenticated head
//! checkpoint lies beyond it: then records were cut off the tail, and the writer continues from
//! the checkpoint so the gap stays visible to `verify` instead of being papered over by new
//! records linked to the truncated tail.

use sea_query::{Expr, ExprTrait, OnConflict, Order, Query};

use super::StoreError;
use super::chain::{self, ChainKey, Hash, StateTag};
use super::db::Exec;
use super::schema::{ChainBase, ChainHead, Events};

/// Position and link of the last record (or of the base, or genesis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub link: Hash,
}

fn parse_link(seq: i64, link: &str) -> Result<Hash, StoreError> {
    chain::from_hex(link).ok_or(StoreError::Corrupt {
        seq,
        reason: "link is not 64 hex digits".into(),
    })
}

/// The `(seq, link)` row of `chain_base` or `chain_head`, and whether its tag is authentic.
pub async fn tagged_row(
    conn: &mut Exec<'_>,
    what: StateTag,
    key: &ChainKey,
) -> Result<Option<(Head, bool)>, StoreError> {
    let q = match what {
        StateTag::Base => Query::select()
            .columns([ChainBase::Seq, ChainBase::Link, ChainBase::Tag])
            .from(ChainBase::Table)
            .and_where(Expr::col(ChainBase::Id).eq(1))
            .to_owned(),
        StateTag::Head => Query::select()
            .columns([ChainHead::Seq, ChainHead::Link, ChainHead::Tag])
            .from(ChainHead::Table)
            .and_where(Expr::col(ChainHead::Id).eq(1))
            .to_owned(),
    };
    let Some(row) = conn.fetch_optional(&q).await? else {
        return Ok(None);
    };
    let seq = row.int("seq")?;
    let Some(link) = chain::from_hex(&row.text("link")?) else {
        return Ok(Some((
            Head {
                seq,
                link: chain::GENESIS,
            },
            false,
        )));
    };
    let tag = row.opt_text("tag")?;
    let authentic = tag.and_then(|t| chain::from_hex(&t)) == Some(key.state_tag(what, seq, &link));
    Ok(Some((Head { seq, link }, authentic)))
}

/// Where the writer continues appending.
pub async fn load_head(conn: &mut Exec<'_>, key: &ChainKey) -> Result<Head, StoreError> {
    let q = Query::select()
        .columns([Events::Seq, Events::Link])
        .from(Events::Table)
        .order_by(Events::Seq, Order::Desc)
        .limit(1)
        .to_owned();
    let tail = match conn.fetch_optional(&q).await? {
        Some(row) => {
            let seq = row.int("seq")?;
            Head {
                seq,
                link: parse_link(seq, &row.text("link")?)?,
            }
        }
        None => match tagged_row(conn, StateTag::Base, key).await? {
            Some((base, _)) => base,
            None => Head {
                seq: 0,
                link: chain::GENESIS,
            },
        },
    };
    match tagged_row(conn, StateTag::Head, key).await? {
        Some((head, true)) if head.seq > tail.seq => {
            tracing::error!(
                log_ends_at = tail.seq,
                head_checkpoint = head.seq,
                "the event log ends before its authenticated head checkpoint: records were cut off its tail; new records continue from the checkpoint so `audittrail verify` keeps reporting the gap"
            );
            Ok(head)
        }
        Some((head, false)) => {
            tracing::error!(
                seq = head.seq,
                "the head checkpoint row is not authenticated by the chain key (forged or edited, or the secret key changed); run `audittrail verify`"
            );
            Ok(tail)
        }
        _ => Ok(tail),
    }
}

/// Records `head` as the authenticated head checkpoint; call it inside every transaction that
/// appends records.
pub async fn write_head(
    conn: &mut Exec<'_>,
    key: &ChainKey,
    head: &Head,
) -> Result<(), StoreError> {
    let tag = key.state_tag(StateTag::Head, head.seq, &head.link);
    let q = Query::insert()
        .into_table(ChainHead::Table)
        .columns([
            ChainHead::Id,
            ChainHead::Seq,
            ChainHead::Link,
            ChainHead::Tag,
        ])
        .values_panic([
            1i64.into(),
            head.seq.into(),
            chain::to_hex(&head.link).into(),
            chain::to_hex(&tag).into(),
        ])
        .on_conflict(
            OnConflict::column(ChainHead::Id)
                .update_columns([ChainHead::Seq, ChainHead::Link, ChainHead::Tag])
                .to_owned(),
        )
        .to_owned();
    conn.execute(&q).await?;
    Ok(())
}

/// Records the chain's base (the last link before the first kept record), authenticated.
/// Retention sweeps call it in the transaction that removes the prefix.
pub async fn write_base(
    conn: &mut Exec<'_>,
    key: &ChainKey,
    base: &Head,
) -> Result<(), StoreError> {
    let tag = key.state_tag(StateTag::Base, base.seq, &base.link);
    let q = Query::insert()
        .into_table(ChainBase::Table)
        .columns([
            ChainBase::Id,
            ChainBase::Seq,
            ChainBase::Link,
            ChainBase::Tag,
        ])
        .values_panic([
            1i64.into(),
            base.seq.into(),
            chain::to_hex(&base.link).into(),
            chain::to_hex(&tag).into(),
        ])
        .on_conflict(
            OnConflict::column(ChainBase::Id)
                .update_columns([ChainBase::Seq, ChainBase::Link, ChainBase::Tag])
                .to_owned(),
        )
        .to_owned();
    conn.execute(&q).await?;
    Ok(())
}
