.PHONY: quickstart test opensearch-start opensearch-stop
quickstart: ; bash scripts/quickstart.sh
test: ; bash scripts/test.sh
opensearch-start: ; bash scripts/opensearch-local.sh start
opensearch-stop: ; bash scripts/opensearch-local.sh stop
