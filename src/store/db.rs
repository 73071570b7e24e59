//! The two backends behind one small surface: pools, connections, transactions and rows as
//! enums over SQLite and Postgres, executing statements built with sea-query.
//!
//! Every store module writes each query once (a sea-query statement, or a [`Raw`] text that is
//! valid on both) and runs it through [`Exec`]; the builder for the backend at hand is picked
//! here. Rows are read through [`Row`]'s typed getters, which decode the same Rust types from
//! both (integers are `BIGINT` in the Postgres schema so they decode as `i64` everywhere).
//! Nothing outside `store/` sees these types.

use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder, Values};
use sea_query_sqlx::{SqlxBinder, SqlxValues};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Connection, Postgres, Sqlite, Transaction};

use super::StoreError;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// SQL text valid on both backends, with `?` placeholders (rewritten to `$n` for Postgres),
/// for the few statements sea-query does not express.
pub struct Raw<'a> {
    pub sql: &'a str,
    pub values: Values,
}

impl<'a> Raw<'a> {
    pub fn new(sql: &'a str, values: impl IntoIterator<Item = sea_query::Value>) -> Self {
        Raw {
            sql,
            values: Values(values.into_iter().collect()),
        }
    }

    fn text(&self, backend: Backend) -> String {
        match backend {
            Backend::Sqlite => self.sql.to_owned(),
            Backend::Postgres => {
                let mut out = String::with_capacity(self.sql.len() + 8);
                let mut n = 0;
                for c in self.sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

/// A statement to run: a sea-query statement or [`Raw`] text.
pub trait Statement {
    fn build(&self, backend: Backend) -> (String, SqlxValues);
}

impl<S: SqlxBinder> Statement for S {
    fn build(&self, backend: Backend) -> (String, SqlxValues) {
        match backend {
            Backend::Sqlite => self.build_sqlx(SqliteQueryBuilder),
            Backend::Postgres => self.build_sqlx(PostgresQueryBuilder),
        }
    }
}

impl Statement for Raw<'_> {
    fn build(&self, backend: Backend) -> (String, SqlxValues) {
        (self.text(backend), SqlxValues(self.values.clone()))
    }
}

/// A row from either backend, read with typed getters by column name.
pub enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

macro_rules! getter {
    ($name:ident, $t:ty) => {
        pub fn $name(&self, column: &str) -> Result<$t, StoreError> {
            use sqlx::Row as _;
            Ok(match self {
                Row::Sqlite(r) => r.try_get::<$t, _>(column)?,
                Row::Postgres(r) => r.try_get::<$t, _>(column)?,
            })
        }
    };
}

impl Row {
    getter!(int, i64);
    getter!(opt_int, Option<i64>);
    getter!(text, String);
    getter!(opt_text, Option<String>);
    getter!(flag, bool);

    /// The first column as an integer (`SELECT COUNT(*)`, `SELECT MAX(seq)`).
    pub fn first_int(&self) -> Result<Option<i64>, StoreError> {
        use sqlx::Row as _;
        Ok(match self {
            Row::Sqlite(r) => r.try_get::<Option<i64>, _>(0)?,
            Row::Postgres(r) => r.try_get::<Option<i64>, _>(0)?,
        })
    }

    /// The first column as text.
    pub fn first_text(&self) -> Result<Option<String>, StoreError> {
        use sqlx::Row as _;
        Ok(match self {
            Row::Sqlite(r) => r.try_get::<Option<String>, _>(0)?,
            Row::Postgres(r) => r.try_get::<Option<String>, _>(0)?,
        })
    }
}

/// Something statements run on: a connection, or one inside a transaction.
pub enum Exec<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

impl Exec<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Exec::Sqlite(_) => Backend::Sqlite,
            Exec::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs `stmt`; returns the number of rows it changed.
    pub async fn execute(&mut self, stmt: &impl Statement) -> Result<u64, StoreError> {
        let (sql, values) = stmt.build(self.backend());
        let sql = sqlx::AssertSqlSafe(sql);
        Ok(match self {
            Exec::Sqlite(c) => sqlx::query_with(sql, values)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Exec::Postgres(c) => sqlx::query_with(sql, values)
                .execute(&mut **c)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch_all(&mut self, stmt: &impl Statement) -> Result<Vec<Row>, StoreError> {
        let (sql, values) = stmt.build(self.backend());
        let sql = sqlx::AssertSqlSafe(sql);
        Ok(match self {
            Exec::Sqlite(c) => sqlx::query_with(sql, values)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Exec::Postgres(c) => sqlx::query_with(sql, values)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    pub async fn fetch_optional(
        &mut self,
        stmt: &impl Statement,
    ) -> Result<Option<Row>, StoreError> {
        let (sql, values) = stmt.build(self.backend());
        let sql = sqlx::AssertSqlSafe(sql);
        Ok(match self {
            Exec::Sqlite(c) => sqlx::query_with(sql, values)
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Sqlite),
            Exec::Postgres(c) => sqlx::query_with(sql, values)
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Postgres),
        })
    }

    /// Runs a statement of the backend's own dialect with no parameters (pragmas, locks).
    pub async fn execute_plain(&mut self, sql: &str) -> Result<(), StoreError> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Exec::Sqlite(c) => {
                sqlx::raw_sql(sql).execute(&mut **c).await?;
            }
            Exec::Postgres(c) => {
                sqlx::raw_sql(sql).execute(&mut **c).await?;
            }
        }
        Ok(())
    }
}

/// A connection owned by one task (the writer's stages, offline commands, a job).
pub enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
    PooledSqlite(PoolConnection<Sqlite>),
    PooledPostgres(PoolConnection<Postgres>),
}

impl Conn {
    pub fn exec(&mut self) -> Exec<'_> {
        match self {
            Conn::Sqlite(c) => Exec::Sqlite(c),
            Conn::Postgres(c) => Exec::Postgres(c),
            Conn::PooledSqlite(c) => Exec::Sqlite(c),
            Conn::PooledPostgres(c) => Exec::Postgres(c),
        }
    }

    pub fn backend(&mut self) -> Backend {
        self.exec().backend()
    }

    /// A transaction that writes: on SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so a read-then-write inside it never meets a stale snapshot.
    pub async fn begin_write(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(match self.exec() {
            Exec::Sqlite(c) => Tx::Sqlite(c.begin_with("BEGIN IMMEDIATE").await?),
            Exec::Postgres(c) => Tx::Postgres(c.begin().await?),
        })
    }

    /// A read-only transaction that sees one snapshot for all its statements.
    pub async fn begin_snapshot(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(match self.exec() {
            Exec::Sqlite(c) => Tx::Sqlite(c.begin().await?),
            Exec::Postgres(c) => Tx::Postgres(
                c.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    pub async fn close(self) {
        let _ = match self {
            Conn::Sqlite(c) => c.close().await,
            Conn::Postgres(c) => c.close().await,
            Conn::PooledSqlite(_) | Conn::PooledPostgres(_) => Ok(()),
        };
    }
}

/// A transaction on either backend; rolled back when dropped uncommitted.
pub enum Tx<'c> {
    Sqlite(Transaction<'c, Sqlite>),
    Postgres(Transaction<'c, Postgres>),
}

impl Tx<'_> {
    pub fn exec(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(t) => Exec::Sqlite(t),
            Tx::Postgres(t) => Exec::Postgres(t),
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

/// A pool of connections on either backend.
#[derive(Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn acquire(&self) -> Result<Conn, StoreError> {
        Ok(match self {
            Pool::Sqlite(p) => Conn::PooledSqlite(p.acquire().await?),
            Pool::Postgres(p) => Conn::PooledPostgres(p.acquire().await?),
        })
    }

    /// Runs one statement on a pooled connection.
    pub async fn fetch_all(&self, stmt: &impl Statement) -> Result<Vec<Row>, StoreError> {
        self.acquire().await?.exec().fetch_all(stmt).await
    }

    pub async fn fetch_optional(&self, stmt: &impl Statement) -> Result<Option<Row>, StoreError> {
        self.acquire().await?.exec().fetch_optional(stmt).await
    }

    pub async fn execute(&self, stmt: &impl Statement) -> Result<u64, StoreError> {
        self.acquire().await?.exec().execute(stmt).await
    }

    /// Connections open and idle, for the pool gauges.
    pub fn sizes(&self) -> (u32, usize) {
        match self {
            Pool::Sqlite(p) => (p.size(), p.num_idle()),
            Pool::Postgres(p) => (p.size(), p.num_idle()),
        }
    }

    pub fn max_connections(&self) -> u32 {
        match self {
            Pool::Sqlite(p) => p.options().get_max_connections(),
            Pool::Postgres(p) => p.options().get_max_connections(),
        }
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// Text for a Postgres `text` column: Postgres refuses the NUL character, which JSON escapes
/// but a short field or a rule's message could hold; it becomes U+FFFD on both backends, so
/// what is stored does not depend on the backend.
pub fn storable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_placeholders_follow_the_backend() {
        let r = Raw::new("SELECT ? + ?", [1i64.into(), 2i64.into()]);
        assert_eq!(r.text(Backend::Sqlite), "SELECT ? + ?");
        assert_eq!(r.text(Backend::Postgres), "SELECT $1 + $2");
    }

    #[test]
    fn nul_is_never_stored() {
        assert_eq!(storable("a\0b"), "a\u{fffd}b");
        assert!(matches!(storable("ab"), std::borrow::Cow::Borrowed(_)));
    }
}
