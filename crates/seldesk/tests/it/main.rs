//! The one integration-test binary: starts the real server in-process on
//! port 0 over a temporary data folder (SQLite, or a fresh PostgreSQL
//! database when SELDESK_TEST_PG is set), runs the CLI, and drives headless
//! Chromium for page journeys.

mod accounts;
mod api;
mod backups;
mod billing;
mod browser;
mod careers;
mod cli;
mod cookies;
mod databases;
mod deploy;
mod erasure;
mod fakes;
mod frame;
mod hardening;
mod helpers;
mod jobs;
mod marketing;
mod nodes;
mod pages;
mod plans;
mod privacy;
mod upgrades;
mod visits;
