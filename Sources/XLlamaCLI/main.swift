import XLlama
print("xllama")
