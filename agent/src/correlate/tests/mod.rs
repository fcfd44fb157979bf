mod fixtures;
mod initiators;
mod json;
mod oom;
mod roles;
mod state;
mod verdicts;
