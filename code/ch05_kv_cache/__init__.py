"""第 5 章 KV Cache 优化：朴素生成与 KV Cache、PagedAttention 块管理、前缀缓存。

子模块各讲一件事：``forward``（按 token 展平的前向，注意力可替换）、``naive``（重算 vs 缓存）、
``kv_size``（各种注意力结构的 KV 大小）、``paged``（块管理器与按块表做注意力）、
``prefix``（链式哈希的前缀缓存与 LRU 淘汰）、``workloads``（本章的测量）。
"""
