//! Order management: placeholder replaced below.
