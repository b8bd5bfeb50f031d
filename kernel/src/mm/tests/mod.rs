//! Host tests of the page-table code against the model of Xen.
