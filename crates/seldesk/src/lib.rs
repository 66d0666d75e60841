//! The `seldesk` binary's library: configuration, wiring and the command line,
//! public so integration tests start the real server in-process.

pub mod app;
mod backup_cli;
pub mod cli;
pub mod config;
mod db_cli;
pub mod upgrade_worker;

pub use app::Application;
pub use config::Config;
