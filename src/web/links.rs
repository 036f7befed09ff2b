//! The links part of the engine: a link of the page's settings, and a link opened over them
//! ([`crate::run::link`]). Neither needs the GPU, so the engine answers them at once, even while
//! `init` has yet to open it; opening a link trains nothing.

use crate::run::link::Link;
use crate::web::host::Host;
use crate::web::protocol::{Event, Request};
use crate::Result;

/// Handles `share_link` and `open_link`.
pub(crate) fn handle(request: Request, host: &dyn Host) -> Result<()> {
    let event = match request {
        Request::ShareLink { settings, corpus } => Event::Link { fragment: Link::share(settings, corpus)? },
        Request::OpenLink { fragment, settings } => Event::LinkOpened(Box::new(Link::decode(&fragment, &settings)?)),
        other => unreachable!("the links part does not handle {other:?}"),
    };
    host.post(&event, &[]);
    Ok(())
}
