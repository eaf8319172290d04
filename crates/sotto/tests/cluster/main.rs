//! Cluster tests: several Sotto nodes on one PostgreSQL database and one
//! NATS server, with end-to-end encrypted clients spread over them. They
//! need both servers: run them with `scripts/test`, which starts them.

mod bus;
mod chat;
mod database;
mod failover;
mod limits;
mod outage;
