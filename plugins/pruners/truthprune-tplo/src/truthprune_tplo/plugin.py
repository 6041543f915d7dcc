from truthprune import hookimpl
