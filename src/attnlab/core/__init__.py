"""The call model, THE score functions, the dispatcher, attach() and the hook runner."""
