//! Room in a request's extension map before the layers fill it.
//!
//! `http::Extensions` starts without a map and grows it as values arrive: a full tollgate
//! stack inserts eight (request id, endpoint, parsed body, caller, model, fallbacks, prompt
//! tokens, telemetry), so its map is allocated three times and rehashed twice per request.
//! `http` has no `with_capacity`; a copy of an empty map that already has the room is the
//! one allocation instead.

use std::sync::OnceLock;

use http::{Extensions, Request};

/// How many extensions a request given room by [`reserve_extensions`] takes before its map
/// grows.
pub const EXTENSION_ROOM: usize = 14;

/// Gives a request with no extensions yet a map with room for [`EXTENSION_ROOM`] of them;
/// a request that has some keeps its own. Use it as `ServiceBuilder::map_request
/// (reserve_extensions)`, outside every layer that inserts one.
///
/// ```
/// use http::Request;
/// use tollgate_core::extensions::reserve_extensions;
///
/// let mut request = reserve_extensions(Request::new(()));
/// assert!(request.extensions().is_empty());
/// request.extensions_mut().insert(42u32);
/// assert_eq!(request.extensions().get::<u32>(), Some(&42));
/// ```
pub fn reserve_extensions<B>(mut request: Request<B>) -> Request<B> {
    if request.extensions().is_empty() {
        *request.extensions_mut() = empty_with_room().clone();
    }
    request
}

/// An empty map that has held [`EXTENSION_ROOM`] values: a hash map keeps its table when
/// emptied, and a clone keeps the table's size.
fn empty_with_room() -> &'static Extensions {
    static ROOMY: OnceLock<Extensions> = OnceLock::new();
    ROOMY.get_or_init(|| {
        #[derive(Clone, Copy)]
        struct Slot<const N: usize>;
        let mut extensions = Extensions::new();
        macro_rules! fill_then_empty {
            ($($n:literal)*) => {
                $(extensions.insert(Slot::<$n>);)*
                $(extensions.remove::<Slot<$n>>();)*
            };
        }
        fill_then_empty!(0 1 2 3 4 5 6 7 8 9 10 11 12 13);
        extensions
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_is_empty_and_a_request_with_extensions_keeps_them() {
        assert!(empty_with_room().is_empty());
        let mut request = Request::new(());
        request.extensions_mut().insert("mine");
        let request = reserve_extensions(request);
        assert_eq!(request.extensions().get::<&str>(), Some(&"mine"));
        assert_eq!(request.extensions().len(), 1);
    }
}
