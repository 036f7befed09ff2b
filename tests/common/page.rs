//! The page's engine without a browser: a [`Host`] that records every event the engine posts.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use wgpt::run::driver::Clock;
use wgpt::web::protocol::Event;
use wgpt::web::Host;

/// An event the engine posted, with the files sent beside it.
pub type PostedEvent = (Event, Vec<Vec<u8>>);

/// Everything the engine posted, in order.
pub type Posted = Rc<RefCell<Vec<PostedEvent>>>;

/// A host that records what is posted; its clock stands still and settling is immediate.
pub struct Recorder(pub Posted);

impl Host for Recorder {
    fn post(&self, event: &Event, files: &[&[u8]]) {
        self.0.borrow_mut().push((event.clone(), files.iter().map(|f| f.to_vec()).collect()));
    }

    fn clock(&self) -> Clock {
        || 0.0
    }

    fn settle(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async {})
    }
}
