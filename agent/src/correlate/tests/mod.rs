mod fixtures;
mod json;
mod oom;
mod roles;
mod state;
mod verdicts;
