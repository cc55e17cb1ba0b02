//! An optional recorder of ReLU activation patterns on the current thread, for NASWOT,
//! which needs the binary code of every ReLU of a forward pass (the PyTorch reference hooks
//! each `nn.ReLU` module). Off unless [`record_relus`] runs; otherwise one thread-local
//! check per ReLU.
use std::cell::RefCell;
use tch::Tensor;

thread_local! {
    static RELUS: RefCell<Option<Vec<Tensor>>> = const { RefCell::new(None) };
}

/// Run `f`, and collect `output > 0` (a bool tensor, no gradient) of every ReLU it applies
/// on this thread, in order. A ReLU output shared by several operations (see
/// [`super::SharedInput`]) is recorded once per operation that uses it, as each has its own
/// ReLU module in the references.
pub fn record_relus<T>(f: impl FnOnce() -> T) -> (T, Vec<Tensor>) {
    /// Puts the outer recorder back, also when `f` unwinds.
    struct Restore(Option<Option<Vec<Tensor>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                RELUS.with(|r| r.replace(previous));
            }
        }
    }
    let mut restore = Restore(Some(RELUS.with(|r| r.replace(Some(Vec::new())))));
    let out = f();
    let previous = restore.0.take().expect("set above");
    let recorded = RELUS.with(|r| r.replace(previous)).unwrap_or_default();
    (out, recorded)
}

/// Called with the output of each ReLU of a forward pass.
pub(crate) fn note_relu(ys: &Tensor) {
    RELUS.with(|r| {
        if let Some(codes) = r.borrow_mut().as_mut() {
            codes.push(ys.gt(0.0));
        }
    });
}
