"""Ship tests: real log servers (FluentServer under node, rsyslogd with imtcp/imrelp) on loopback ports
picked at random; nothing leaves the machine. They need no root and never skip: a missing server is a
failure that names the make target installing it."""
