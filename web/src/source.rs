//! Which served bundle the page shows: the image model (`bundle/`) or the review model (`reviews/`), chosen by the
//! page's address (`?data=reviews`). Each keeps its own saved state, so switching never overwrites the other's.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Images,
    Reviews,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Images, Source::Reviews];

    /// The source the page's address asks for (images unless `?data=reviews`).
    pub fn current() -> Self {
        let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
        let reviews = search.trim_start_matches('?').split('&').any(|pair| pair == "data=reviews");
        if reviews { Source::Reviews } else { Source::Images }
    }

    /// Where its bundle is served from, relative to the page.
    pub fn dir(self) -> &'static str {
        match self {
            Source::Images => "bundle",
            Source::Reviews => "reviews",
        }
    }

    /// The page's address for it (without a saved state: a link belongs to one bundle).
    pub fn href(self) -> &'static str {
        match self {
            Source::Images => "./",
            Source::Reviews => "./?data=reviews",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Source::Images => "images",
            Source::Reviews => "reviews",
        }
    }

    /// A local storage key of this source's (the image model keeps the keys it always had).
    pub fn key(self, base: &str) -> String {
        match self {
            Source::Images => base.to_owned(),
            Source::Reviews => format!("{base}.reviews"),
        }
    }
}
