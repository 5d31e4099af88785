def main() -> None:
    print("pathcond")
