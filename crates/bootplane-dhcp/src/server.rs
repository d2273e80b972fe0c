//! The DHCP sockets. Not written yet.
