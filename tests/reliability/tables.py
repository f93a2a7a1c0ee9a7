"""Print the tables of docs/reliability.md that are rendered from the test cases."""

from tests.reliability.test_root_attacks import table

if __name__ == "__main__":
    print(table(), end="")
