//! A child process that is killed and reaped when its owner is dropped, including when a test
//! panics while the child is still starting (before the owning struct exists): a failed start
//! used to leave Envoys running after the test run.

use std::process::Child;

/// Kills and reaps the child on drop.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
