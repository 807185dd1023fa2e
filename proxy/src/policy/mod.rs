//! Policy decisions shared by the HTTP and network filters: RBAC evaluation and token
//! buckets. Pure over their inputs (the clock is passed in), so they are tested table by table.

pub mod rbac;
pub mod token_bucket;
