//! [`Pipeline`]: one blocking PostgreSQL connection that can send a
//! statement without waiting for its answer.
//!
//! Why we drive tokio-postgres ourselves instead of using the blocking
//! `postgres::Client`: that client waits for each statement's answer before
//! it sends the next, and a signup is a dozen statements on the writer's one
//! connection, one after the other. `benches/pg_profile.sh` counted 12
//! waited round trips per new signup. Sending what need not be waited for
//! cut that to 5: +10 % signups/s with the database on the same machine,
//! where a round trip (about 70 µs) costs less than the server's work per
//! statement, and 2.2× with the database 2.45 ms away, where the round
//! trips are nearly all of the time (BENCHMARKS.md, "Pipelining").
//!
//! Most of those statements return nothing the job needs: the day's
//! counters, the proof event, the outbox row, `SAVEPOINT`. [`Pipeline::send`]
//! queues such a statement; it goes out together with the next statement
//! that is waited for ([`Pipeline::wait`] polls the queued ones first, in
//! order, so tokio-postgres writes them all to the socket at once), and the
//! server runs them in order, as if each had been waited for. Their answers
//! are checked at that next wait: the first failure among them is what the
//! wait returns, whatever the waited statement itself answered. That
//! matters for `COMMIT`: PostgreSQL answers `COMMIT` of a transaction that
//! a failed statement aborted with a plain `ROLLBACK` tag, not an error, so
//! only the queued statement's own error tells the caller nothing was
//! committed.
//!
//! Like the blocking client, each pipeline drives its connection on a
//! current-thread tokio runtime of its own, only while one of its calls
//! blocks; it must not be called from inside another tokio runtime's
//! worker (the store's writer is a plain thread, readers run in
//! `spawn_blocking`).

use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;

use futures_util::TryStreamExt;
use futures_util::future::{MaybeDone, maybe_done, poll_fn};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Error, Row, Socket, Statement};

/// A parameter a queued statement owns until it is sent.
pub type OwnedParam = Box<dyn ToSql + Sync + Send>;

/// A statement sent (or to be sent with the next wait) whose answer nobody
/// has checked yet.
type Unchecked = MaybeDone<Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>>;

pub struct Pipeline {
    runtime: tokio::runtime::Runtime,
    client: Arc<Client>,
    unchecked: RefCell<Vec<Unchecked>>,
}

impl Pipeline {
    /// Connects as `config` says, through `tls`.
    pub fn connect<T>(config: &Config, tls: T) -> Result<Pipeline, Error>
    where
        T: MakeTlsConnect<Socket> + 'static,
        T::Stream: Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread tokio runtime starts (it needs only an epoll handle)");
        let (client, connection) = runtime.block_on(config.connect(tls))?;
        // The connection ends when the server goes away; the client then
        // says `is_closed`, and its owner connects again.
        runtime.spawn(async move {
            let _ = connection.await;
        });
        Ok(Pipeline { runtime, client: Arc::new(client), unchecked: RefCell::new(Vec::new()) })
    }

    /// Whether the connection is closed (the server went away).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Queues `statement` with `params`: it is sent with the next wait, and
    /// its failure is reported by that wait.
    pub fn send(&self, statement: Statement, params: Vec<OwnedParam>) {
        let client = self.client.clone();
        let request = async move {
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
            client.execute(&statement, &params).await.map(drop)
        };
        self.unchecked.borrow_mut().push(maybe_done(Box::pin(request)));
    }

    /// Queues statements without parameters (`SAVEPOINT job`), as [`Pipeline::send`].
    pub fn send_batch(&self, sql: &'static str) {
        let client = self.client.clone();
        self.unchecked.borrow_mut().push(maybe_done(Box::pin(async move { client.batch_execute(sql).await })));
    }

    /// Waits for every queued statement: the first failure among them.
    pub fn flush(&self) -> Result<(), Error> {
        self.wait(async { Ok(()) })
    }

    /// Sends the queued statements and then `request`, and waits for all
    /// of their answers. The first queued statement that failed is the
    /// error; otherwise `request`'s answer.
    fn wait<T>(&self, request: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let mut unchecked = std::mem::take(&mut *self.unchecked.borrow_mut());
        let mut request = pin!(maybe_done(request));
        // One pass polls every future in order, so each request enters the
        // connection's queue in the order it was made.
        self.runtime.block_on(poll_fn(|cx| {
            let mut all_done = true;
            for statement in unchecked.iter_mut() {
                all_done &= Pin::new(statement).poll(cx).is_ready();
            }
            all_done &= request.as_mut().poll(cx).is_ready();
            if all_done { Poll::Ready(()) } else { Poll::Pending }
        }));
        for mut statement in unchecked {
            if let Some(Err(e)) = Pin::new(&mut statement).take_output() {
                return Err(e);
            }
        }
        request.as_mut().take_output().expect("polled until done")
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement, Error> {
        self.wait(self.client.prepare(sql))
    }

    pub fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        self.wait(self.client.batch_execute(sql))
    }

    pub fn execute(&self, statement: &Statement, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        self.wait(self.client.execute(statement, params))
    }

    pub fn query(&self, statement: &Statement, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        self.wait(self.client.query(statement, params))
    }

    pub fn query_opt(&self, statement: &Statement, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error> {
        self.wait(self.client.query_opt(statement, params))
    }

    pub fn query_one(&self, statement: &Statement, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        self.wait(self.client.query_one(statement, params))
    }

    /// Statements that are not prepared (the schema, the migration's
    /// checks, `migrate-store`'s generated ones).
    pub fn execute_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        self.wait(self.client.execute(sql, params))
    }

    pub fn query_one_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        self.wait(self.client.query_one(sql, params))
    }

    pub fn query_opt_sql(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error> {
        self.wait(self.client.query_opt(sql, params))
    }

    /// Hands each row of `statement` to `each` as it arrives, in constant
    /// memory: tokio-postgres passes the server's messages to the row
    /// stream through a channel of capacity 1 and stops reading the socket
    /// while it is full, and the connection is driven only while the next
    /// row is awaited. So at most a socket read's worth of rows is held,
    /// and the server waits on TCP meanwhile. `each` must not use this
    /// pipeline. When `each` fails, the rows left are dropped unread.
    pub fn for_each_row<E>(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
        failed: impl Fn(Error) -> E,
        mut each: impl FnMut(Row) -> Result<(), E>,
    ) -> Result<(), E> {
        let rows = self.wait(self.client.query_raw(statement, params.iter().copied())).map_err(&failed)?;
        let mut rows = pin!(rows);
        while let Some(row) = self.runtime.block_on(rows.as_mut().try_next()).map_err(&failed)? {
            each(row)?;
        }
        Ok(())
    }
}
