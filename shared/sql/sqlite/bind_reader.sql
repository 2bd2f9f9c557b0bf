-- SQLite has no session state to bind: the reader session's queries carry its workspace themselves.
SELECT 1
