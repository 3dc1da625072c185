"""The OData 4.0 feed of course progress (issue 13): model, query options, paging, the resource."""
