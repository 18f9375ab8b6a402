"""Pure sync logic over the store and connector protocols; knows no vendor and no driver."""
