"""第 7 章 量化技术：整数量化、INT4 打包、FP8/FP4 格式、W4A16 线性层、QAT、KV Cache 量化、精度对齐。

子模块各讲一件事：``quant``（对称/非对称、按张量/通道/组的 INT 量化与误差指标）、
``pack``（INT4 位打包）、``formats``（FP8 E4M3/E5M2、FP4 E2M1、MXFP4、NVFP4）、
``qmodel``（把量化用到本书模型上）、``qat``（伪量化 + STE 的量化感知训练）、
``kv_quant``（KV Cache 量化）、``alignment``（训推精度对齐）。
"""
