mod fixtures;
mod json;
mod oom;
mod state;
mod verdicts;
