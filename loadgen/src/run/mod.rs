//! Running the lab: the local environment or a deployment (`lab`, `deployed`), the protocols'
//! processes (`protocols`, over `twopc::deployment` and `saga::deployment`), the floors (`probe`), one measured run
//! (`experiment`) with its faults, resources and slowest second, the checker, and `soak`.

pub mod check;
pub mod deployed;
pub mod env_up;
pub mod environment;
pub mod experiment;
pub mod faults;
pub mod lab;
pub mod noop_server;
pub mod primitives;
pub mod probe;
pub mod protocols;
pub mod resources;
pub mod soak;
pub mod stalls;
pub mod warm;
